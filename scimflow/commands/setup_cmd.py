"""``scimflow setup ...``: the one-off steps of docs/setup.md, as commands instead of pasted scripts.

- ``superoffice-key``: SuperOffice's RSA private key as XML (``<RSAKeyValue>``) to a PKCS#8 PEM;
- ``entra-certificate``: a self-signed certificate and key for the Entra app registration, with its
  SHA-1 thumbprint (as Entra shows it) and ``x5t`` (built by :mod:`scimflow.certs`);
- ``system-user-token``: the system user token out of the ``id_token`` SuperOffice's token endpoint
  returns after the administrator approved the app;
- ``prefect-secret``: save a value read from stdin as a Prefect Secret block.

Private files are written owner-only (0600) through a fresh temporary file renamed into place, so an
existing symlink at the destination is replaced, never followed.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.certs import client_certificate, private_key_pem, thumbprints

__all__ = [
    "SetupError",
    "entra_certificate",
    "prefect_secret",
    "rsa_xml_to_pem",
    "superoffice_key",
    "system_user_token",
    "system_user_token_from",
    "write_owner_only",
]

SYSTEM_TOKEN_CLAIM = "http://schemes.superoffice.net/identity/system_token"  # noqa: S105 - a claim name
_RSA_PARTS = ("Modulus", "Exponent", "P", "Q", "DP", "DQ", "InverseQ", "D")


class SetupError(ValueError):
    """A setup input is unusable; the message names the file and what is wrong (never a secret)."""


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def _read_input(file: Path | None, *, encoding: str = "utf-8") -> str:
    """The text of ``file``, or of stdin when ``None``; :class:`SetupError` naming it when it cannot be read."""
    try:
        return file.read_text(encoding=encoding) if file is not None else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"{file if file is not None else '<stdin>'}: cannot read it: {why}"
        raise SetupError(msg) from None


def write_owner_only(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), atomically, never following a symlink.

    Raises:
        SetupError: ``path`` exists and ``overwrite`` is false, or it cannot be written.
    """
    if (path.exists() or path.is_symlink()) and not overwrite:
        msg = f"{path}: exists already (give --force to replace it)"
        raise SetupError(msg)
    folder = path.parent if str(path.parent) else Path()
    tmp = folder / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        msg = f"{path}: cannot write it: {exc.strerror}"
        raise SetupError(msg) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)  # replaces a symlink itself, never its target
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        msg = f"{path}: cannot write it: {exc.strerror}"
        raise SetupError(msg) from None


def _b64int(root: ET.Element, tag: str, source: str) -> int:
    text = root.findtext(tag)
    if text is None or not text.strip():
        msg = f"{source}: <{tag}> is missing (a private key has Modulus, Exponent, P, Q, DP, DQ, InverseQ and D)"
        raise SetupError(msg)
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        msg = f"{source}: <{tag}> is not base64"
        raise SetupError(msg) from None
    return int.from_bytes(raw, "big")


def rsa_xml_to_pem(xml_text: str, *, source: str = "<xml>") -> bytes:
    """SuperOffice's ``<RSAKeyValue>`` private key as an unencrypted PKCS#8 PEM (checked for consistency)."""
    try:
        root = ET.fromstring(xml_text)  # noqa: S314 - a local file the operator chose; no entities are expanded
    except ET.ParseError as exc:
        msg = f"{source}: not XML ({exc})"
        raise SetupError(msg) from None
    if root.tag != "RSAKeyValue":
        msg = f"{source}: the root element is <{root.tag}>, not <RSAKeyValue>"
        raise SetupError(msg)
    n = {tag: _b64int(root, tag, source) for tag in _RSA_PARTS}
    public = rsa.RSAPublicNumbers(n["Exponent"], n["Modulus"])
    private = rsa.RSAPrivateNumbers(n["P"], n["Q"], n["D"], n["DP"], n["DQ"], n["InverseQ"], public)
    try:
        key = private.private_key()
    except ValueError:
        msg = f"{source}: the key's numbers do not belong together (is it the whole <RSAKeyValue> you were given?)"
        raise SetupError(msg) from None
    return private_key_pem(key)


def superoffice_key(xml_file: Path, out: Path, *, force: bool = False) -> int:
    """``setup superoffice-key``: convert the XML key file to a 0600 PEM; exit 0, or 1 naming the problem."""
    try:
        text = _read_input(xml_file, encoding="utf-8-sig")
        write_owner_only(out, rsa_xml_to_pem(text, source=str(xml_file)), overwrite=force)
    except SetupError as exc:
        _err(f"error: {exc}")
        return 1
    sys.stdout.write(f"wrote {out} (PKCS#8 PEM, owner-only); use it as superoffice.private_key\n")
    return 0


def entra_certificate(
    out_key: Path, out_cert: Path, *, days: int, subject: str, force: bool = False, as_json: bool = False
) -> int:
    """``setup entra-certificate``: write the key (0600) and certificate; print the thumbprint; 0 or 1."""
    if days < 1 or days > 3650:
        _err("error: --days must be between 1 and 3650")
        return 1
    if not subject.strip():
        _err("error: --subject must not be empty")
        return 1
    for path in (out_key, out_cert):
        if (path.exists() or path.is_symlink()) and not force:
            _err(f"error: {path}: exists already (give --force to replace it)")
            return 1
    key_pem, cert_pem = client_certificate(subject.strip(), days)
    cert = x509.load_pem_x509_certificate(cert_pem)
    thumb, x5t = thumbprints(cert.public_bytes(serialization.Encoding.DER))
    try:
        write_owner_only(out_key, key_pem, overwrite=force)
        write_owner_only(out_cert, cert_pem, overwrite=force)
    except SetupError as exc:
        _err(f"error: {exc}")
        return 1
    expires = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    if as_json:
        doc = {"thumbprint": thumb, "x5t": x5t, "expires": expires, "key": str(out_key), "certificate": str(out_cert)}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    sys.stdout.write(
        f"wrote {out_key} (private key, owner-only) and {out_cert} (upload this one to the app registration)\n"
        f"thumbprint: {thumb}\n"
        f"x5t:        {x5t}\n"
        f"expires:    {expires}\n"
    )
    return 0


def system_user_token_from(text: str, *, source: str = "<stdin>") -> str:
    """The system user token claim of an ``id_token``, given the token endpoint's JSON answer or the bare JWT.

    The signature is not checked here (the token came straight from SuperOffice over TLS, and only one
    claim is read); the login service checks what scimflow later sends.
    """
    import jwt

    raw = text.strip()
    token: Any = raw
    if raw.startswith("{"):
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            msg = f"{source}: not valid JSON ({exc})"
            raise SetupError(msg) from None
        token = doc.get("id_token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            err = doc.get("error_description") or doc.get("error") if isinstance(doc, dict) else None
            msg = f"{source}: the answer has no id_token" + (f" (SuperOffice says: {err})" if err else "")
            raise SetupError(msg)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        msg = f"{source}: not a JWT: {type(exc).__name__}"
        raise SetupError(msg) from None
    value = claims.get(SYSTEM_TOKEN_CLAIM)
    if not isinstance(value, str) or not value:
        msg = f"{source}: the id_token has no {SYSTEM_TOKEN_CLAIM} claim (was the app approved for a system user?)"
        raise SetupError(msg)
    return value


def system_user_token(file: Path | None, out: Path | None, *, force: bool = False) -> int:
    """``setup system-user-token``: print (or write 0600) the system user token; exit 0, or 1."""
    source = str(file) if file is not None else "<stdin>"
    try:
        value = system_user_token_from(_read_input(file), source=source)
        if out is not None:
            write_owner_only(out, value.encode() + b"\n", overwrite=force)
    except SetupError as exc:
        _err(f"error: {exc}")
        return 1
    if out is not None:
        sys.stdout.write(f"wrote the system user token to {out} (owner-only)\n")
    else:
        sys.stdout.write(value + "\n")
    return 0


def prefect_secret(name: str, file: Path | None) -> int:
    """``setup prefect-secret NAME``: save stdin (or ``--from-file``) as a Prefect Secret block; 0 or 1."""
    from scimflow.errors import ConfigError
    from scimflow.secretref import scheme_plugin

    try:
        value = _read_input(file).strip()
    except SetupError as exc:
        _err(f"error: {exc}")
        return 1
    if not value:
        _err("error: the value is empty; nothing was saved")
        return 1
    try:
        scheme_plugin("prefect-secret").save_prefect_secret(name, value)
    except ConfigError as exc:
        _err(f"error: {exc}")
        return 1
    sys.stdout.write(f"saved Prefect Secret block {name!r}; refer to it as prefect-secret:{name}\n")
    return 0
