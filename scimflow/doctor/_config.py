"""Doctor's local checks: the configuration loads, the ``ca_bundle`` loads, every secret reference resolves."""

from __future__ import annotations

import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.config import Config, ConfigError, SecretRef, load_config
from scimflow.connectors.http import ssl_context
from scimflow.doctor._common import Check

__all__ = ["check_ca_bundle", "check_config", "check_secrets"]


def check_config(path: Path) -> tuple[Check, Config | None]:
    """The configuration file loads and validates."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return Check("configuration", False, str(exc), "fix the file and keys named above (docs/setup.md step 3)"), None
    return Check("configuration", True, f"{config.source} loads"), config


def check_ca_bundle(config: Config) -> Check | None:
    """The extra CA file, if configured, exists and holds certificates."""
    if config.ca_bundle is None:
        return None
    try:
        ssl_context(config.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return Check(
            "ca_bundle",
            False,
            f"{config.ca_bundle} cannot be loaded: {reason}",
            "point ca_bundle at a PEM file of the CA certificate(s) to trust, or remove it",
        )
    return Check("ca_bundle", True, f"{config.ca_bundle} loads")


def _secret_refs(config: Config) -> Iterator[tuple[str, SecretRef]]:
    """Every secret reference of the config with its key (only the target's block: ``superoffice`` or ``scim``)."""
    e, so = config.entra, config.superoffice
    if e.client_secret is not None:
        yield "entra.client_secret", e.client_secret
    if e.certificate is not None:
        yield "entra.certificate.private_key", e.certificate.private_key
        if e.certificate.public_certificate is not None:
            yield "entra.certificate.public_certificate", e.certificate.public_certificate
        if e.certificate.passphrase is not None:
            yield "entra.certificate.passphrase", e.certificate.passphrase
    if config.target == "scim":
        yield "scim.token", config.require_scim().token
        return
    if so is not None:
        yield "superoffice.client_secret", so.client_secret
        yield "superoffice.system_user_token", so.system_user_token
        yield "superoffice.private_key", so.private_key


def _secret_fix(ref: SecretRef) -> str:
    if ref.kind == "env":
        return f"set the environment variable {ref.target} where scimflow runs (the worker's service, the container)"
    if ref.kind == "file":
        return f"create {ref.path} (owner-only: chmod 600) or fix the path; relative paths resolve against the config's folder"
    return (
        f"create the Prefect Secret block {ref.target!r} on the Prefect server (docs/setup.md step 3) "
        "and make sure PREFECT_API_URL points at that server"
    )


def _key_problem(key: str, value: str, passphrase: str | None) -> str | None:
    """Why a revealed private key is unusable, or ``None``."""
    password = passphrase.encode() if passphrase else None
    try:
        loaded = serialization.load_pem_private_key(value.encode(), password=password)
    except (ValueError, TypeError):
        if value.lstrip().startswith("<RSAKeyValue>"):
            return "is an XML key; convert it to PEM (docs/setup.md step 2)"
        return "is not a readable PEM private key (wrong file, or encrypted without a passphrase)"
    if key == "superoffice.private_key" and not isinstance(loaded, rsa.RSAPrivateKey):
        return "is not an RSA key (SuperOffice signs system-user tokens with RSA)"
    return None


def check_secrets(config: Config) -> tuple[list[Check], set[str]]:
    """Every secret reference resolves, key material parses, and secret files are owner-only.

    Returns the checks and the config keys whose secret failed (later checks skip on those).
    """
    checks: list[Check] = []
    failed: set[str] = set()
    passphrase: str | None = None
    cert = config.entra.certificate
    if cert is not None and cert.passphrase is not None:
        try:
            passphrase = cert.passphrase.reveal()
        except ConfigError:
            passphrase = None
    for key, ref in _secret_refs(config):
        name = f"secret {key}"
        try:
            value = ref.reveal()
        except ConfigError as exc:
            checks.append(Check(name, False, str(exc), _secret_fix(ref)))
            failed.add(key)
            continue
        if not value:
            checks.append(Check(name, False, f"{ref} is empty", _secret_fix(ref)))
            failed.add(key)
            continue
        problem = None
        if key in ("entra.certificate.private_key", "superoffice.private_key"):
            problem = _key_problem(key, value, passphrase)
        if problem:
            checks.append(Check(name, False, f"{ref} {problem}", _secret_fix(ref) if ref.kind != "file" else None))
            failed.add(key)
            continue
        path = ref.path
        if path is not None and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            checks.append(
                Check(name, True, f"{ref} resolves, but others can read {path}", f"chmod 600 {path}", warn=True)
            )
            continue
        checks.append(Check(name, True, f"{ref} resolves"))
    return checks, failed
