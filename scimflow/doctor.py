"""``scimflow doctor``: check that a configuration can work, and say how to fix what cannot.

Each check is a plain function returning :class:`Check` values (``name``, ``ok``, ``detail``, ``fix``);
:func:`run_checks` runs them in dependency order, skipping the checks whose prerequisite failed.
They talk to the configured endpoints exactly as the sync does: TLS verification always on, the
config's ``ca_bundle`` added to the system trust store, the connectors' own authentication
(:class:`~scimflow.connectors.graph.GraphSource`'s msal app, :class:`~scimflow.connectors.superoffice.SuperOfficeTarget`'s
system-user login). An emulator and the real service are checked by the same code.

What is checked:

- the configuration loads, the ``ca_bundle`` loads, and every secret reference resolves (named by its
  reference, never its value) to usable key material;
- each endpoint answers over TLS (DNS failure, refused connection, timeout and an untrusted certificate
  told apart), and its certificate is not about to expire (< 30 days warns, expired fails);
- the clock: the ``Date`` header of Graph and SuperOffice against local UTC (> 5 minutes fails);
- Entra: the certificate credential (expiry, thumbprint, key pair), a token, and the two Graph
  permissions (``User.Read.All``: ``GET /v1.0/users``; ``GroupMember.Read.All``: ``GET /v1.0/groups`` and
  ``transitiveMembers``), plus a warning for permissions beyond those when the token lists its roles;
- SuperOffice: the system user (Authenticate), then the Web API with the ticket.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import re
import socket
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.config import Config, ConfigError, SecretRef, load_config
from scimflow.connectors.errors import AuthError, ConnectorError, NotFoundError
from scimflow.connectors.http import RetryPolicy, build_client, send, ssl_context

__all__ = [
    "CERT_WARN_DAYS",
    "CLOCK_FAIL_SECONDS",
    "REQUIRED_GRAPH_PERMISSIONS",
    "Check",
    "Endpoint",
    "check_ca_bundle",
    "check_clock",
    "check_config",
    "check_endpoint",
    "check_entra_certificate",
    "check_entra_token",
    "check_graph_permissions",
    "check_least_privilege",
    "check_secrets",
    "check_superoffice_api",
    "check_superoffice_login",
    "endpoints",
    "run_checks",
]

#: A server or credential certificate expiring within this many days is a warning.
CERT_WARN_DAYS = 30
#: A clock further off than this (seconds) from a server's ``Date`` fails: tokens and signed system-user
#: tokens are only accepted within 5 minutes.
CLOCK_FAIL_SECONDS = 300.0
#: Beyond this, the clock check warns.
CLOCK_WARN_SECONDS = 60.0
#: The Graph application permissions scimflow needs, and nothing more.
REQUIRED_GRAPH_PERMISSIONS: tuple[str, ...] = ("User.Read.All", "GroupMember.Read.All")

#: Doctor fails fast: two attempts, bounded, instead of the sync's patient retry budget.
_POLICY = RetryPolicy(attempts=2, timeout=20.0, wait_initial=0.2, wait_max=1.0, max_retry_after=2.0)
_TIMEOUT = 10.0
_GRANT = "in Entra: App registrations → scimflow → API permissions → add Microsoft Graph application permission {perm}, then Grant admin consent"


@dataclass(frozen=True)
class Check:
    """One check's outcome. ``warn`` passes but needs attention; ``skipped`` did not run (a prerequisite failed)."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warn: bool = False
    skipped: bool = False

    @property
    def status(self) -> str:
        """``ok``, ``warn``, ``fail`` or ``skip``."""
        if self.skipped:
            return "skip"
        if not self.ok:
            return "fail"
        return "warn" if self.warn else "ok"


def _client(ca_bundle: Path | None, **kwargs: Any) -> httpx.Client:
    """A client built like the connectors' (:func:`build_client`), sharing one verifying SSL context."""
    transport = httpx.HTTPTransport(verify=ssl_context(ca_bundle), retries=0)
    return build_client(timeout=_TIMEOUT, transport=transport, **kwargs)


def _skip(name: str, why: str) -> Check:
    return Check(name, ok=False, detail=f"skipped: {why}", skipped=True)


# ---------------------------------------------------------------------------------------------- config


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
    e, so = config.entra, config.superoffice
    if e.client_secret is not None:
        yield "entra.client_secret", e.client_secret
    if e.certificate is not None:
        yield "entra.certificate.private_key", e.certificate.private_key
        if e.certificate.public_certificate is not None:
            yield "entra.certificate.public_certificate", e.certificate.public_certificate
        if e.certificate.passphrase is not None:
            yield "entra.certificate.passphrase", e.certificate.passphrase
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


def check_entra_certificate(config: Config, *, today: dt.datetime | None = None) -> Check | None:
    """The Entra certificate credential: not expired or expiring, its thumbprint and key pair match."""
    cert = config.entra.certificate
    if cert is None:
        return None
    name = "Entra certificate credential"
    if cert.public_certificate is None:
        return Check(
            name,
            True,
            "not checked: entra.certificate.public_certificate is not configured",
            "add public_certificate (the .pem you uploaded) so doctor can warn before it expires",
            warn=True,
        )
    try:
        pem = cert.public_certificate.reveal()
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ConfigError as exc:
        return _skip(name, str(exc))
    except ValueError:
        return Check(
            name,
            False,
            f"{cert.public_certificate} is not a PEM certificate",
            "point it at the certificate you uploaded",
        )
    thumb = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra thumbprints are SHA-1
    configured = cert.thumbprint.replace(":", "").replace(" ", "").upper()
    if thumb != configured:
        return Check(
            name,
            False,
            f"entra.certificate.thumbprint {configured} is not the certificate's ({thumb})",
            f"set entra.certificate.thumbprint to {thumb}",
        )
    try:
        key = serialization.load_pem_private_key(
            cert.private_key.reveal().encode(),
            password=cert.passphrase.reveal().encode() if cert.passphrase is not None else None,
        )
    except (ConfigError, ValueError, TypeError):
        key = None  # reported by check_secrets
    if key is not None and key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return Check(
            name,
            False,
            "entra.certificate.private_key does not belong to the public certificate",
            "configure the key the certificate was made from (or upload the certificate of this key)",
        )
    return _expiry_check(
        name,
        certificate.not_valid_after_utc,
        today,
        renew=(
            "make a new certificate (docs/setup.md step 1), upload it with `az ad app credential reset --append`, "
            "then update the key, thumbprint and public_certificate"
        ),
    )


def _expiry_check(name: str, not_after: dt.datetime, today: dt.datetime | None, *, renew: str) -> Check:
    now = today or dt.datetime.now(dt.UTC)
    days = (not_after - now).total_seconds() / 86400
    when = not_after.strftime("%Y-%m-%d")
    if days < 0:
        return Check(name, False, f"expired on {when}", renew)
    if days < CERT_WARN_DAYS:
        return Check(name, True, f"expires on {when}, in {int(days)} days", renew, warn=True)
    return Check(name, True, f"valid until {when} ({int(days)} days)")


# ------------------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """A TLS endpoint to check: host, port and the config keys that name it."""

    host: str
    port: int
    keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def service(self) -> str:
        """What runs there, from the config keys: e.g. ``Entra sign-in + Graph``."""
        names = {
            "entra.authority_host": "Entra sign-in",
            "entra.graph_url": "Graph",
            "superoffice.login_url": "SuperOffice login",
            "superoffice.webapi_url": "SuperOffice Web API",
        }
        return " + ".join(names.get(k, k) for k in self.keys)


def endpoints(config: Config) -> list[Endpoint]:
    """The distinct host:port pairs of the configured URLs, each with the keys that use it."""
    urls = {
        "entra.authority_host": config.entra.authority_host,
        "entra.graph_url": config.entra.graph_url,
        "superoffice.login_url": config.superoffice.login_url,
        "superoffice.webapi_url": config.superoffice.webapi_url,
    }
    found: dict[tuple[str, int], list[str]] = {}
    for key, url in urls.items():
        parts = urlsplit(url)
        host = parts.hostname or ""
        found.setdefault((host, parts.port or 443), []).append(key)
    return [Endpoint(h, p, tuple(keys)) for (h, p), keys in found.items()]


def check_endpoint(
    endpoint: Endpoint, ca_bundle: Path | None, *, timeout: float = _TIMEOUT, today: dt.datetime | None = None
) -> list[Check]:
    """Connect with TLS verification on; tell DNS, refused, timeout and untrusted apart; check the certificate's expiry."""
    keys = ", ".join(endpoint.keys)
    name = f"reach {endpoint.service} ({endpoint.label})"
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [
            Check(
                name,
                False,
                f"DNS: cannot resolve {endpoint.host} ({exc.strerror})",
                f"check the host name in {keys}, and this machine's DNS",
            )
        ]
    try:
        context = ssl_context(ca_bundle)
    except (OSError, ssl.SSLError):
        return [_skip(name, "the ca_bundle cannot be loaded")]
    address = infos[0][4]
    try:
        sock = socket.create_connection((str(address[0]), endpoint.port), timeout=timeout)
    except ConnectionRefusedError:
        return [
            Check(
                name,
                False,
                f"connection refused by {endpoint.label}",
                f"check the port in {keys} and that the service is running (and no firewall rejects it)",
            )
        ]
    except TimeoutError:
        return [
            Check(
                name,
                False,
                f"no answer from {endpoint.label} within {timeout:.0f} s",
                f"a firewall or proxy drops the connection: allow outbound HTTPS to {endpoint.label}",
            )
        ]
    except OSError as exc:
        return [
            Check(
                name,
                False,
                f"cannot connect to {endpoint.label}: {exc.strerror or type(exc).__name__}",
                "check this machine's network route to the service",
            )
        ]
    try:
        with sock, context.wrap_socket(sock, server_hostname=endpoint.host) as tls:
            peer = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return [_untrusted(name, endpoint, exc, keys)]
    except (ssl.SSLError, OSError) as exc:
        return [
            Check(
                name,
                False,
                f"TLS handshake with {endpoint.label} failed: {getattr(exc, 'reason', None) or exc}",
                f"check that {keys} is an https:// URL of a TLS port",
            )
        ]
    checks = [Check(name, True, f"TLS ({version}) verified")]
    not_after = (peer or {}).get("notAfter")
    if isinstance(not_after, str):
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC)
        checks.append(
            _expiry_check(
                f"TLS certificate of {endpoint.service}",
                expires,
                today,
                renew="the service's operator must renew its TLS certificate (for the emulators: restart `scimflow emulate`)",
            )
        )
    return checks


def _untrusted(name: str, endpoint: Endpoint, exc: ssl.SSLCertVerificationError, keys: str) -> Check:
    code = getattr(exc, "verify_code", None)
    message = getattr(exc, "verify_message", None) or str(exc)
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return Check(
            name,
            False,
            f"the TLS certificate of {endpoint.label} has expired",
            "the service must renew its certificate; if it is current, this machine's clock is wrong (sync it with NTP)",
        )
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return Check(
            name,
            False,
            f"the TLS certificate of {endpoint.label} is not for {endpoint.host}",
            f"use the host name the certificate names in {keys}",
        )
    return Check(
        name,
        False,
        f"TLS certificate of {endpoint.label} not trusted: {message}",
        "set ca_bundle in the config to the CA that issued it (e.g. your TLS-inspecting proxy's CA); "
        "verification stays on",
    )


def check_clock(
    service: str, url: str, ca_bundle: Path | None, *, now: dt.datetime | None = None, timeout: float = _TIMEOUT
) -> Check:
    """Compare the ``Date`` header of a response from ``url`` with local UTC."""
    name = f"clock vs {service}"
    try:
        with _client(ca_bundle) as client:
            response = client.get(url, timeout=timeout)
            local = now or dt.datetime.now(dt.UTC)
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return _skip(name, f"no response ({type(exc).__name__})")
    dates = response.headers.get_list("date")
    if not dates:
        return Check(name, True, f"not checked: {service} sent no Date header", warn=True)
    try:
        # the last Date is the application's own (a server may prepend its default one)
        remote = email.utils.parsedate_to_datetime(dates[-1])
    except (TypeError, ValueError):
        return Check(name, True, f"not checked: unreadable Date header {dates[-1]!r}", warn=True)
    if remote.tzinfo is None:
        remote = remote.replace(tzinfo=dt.UTC)
    offset = (local - remote).total_seconds()
    where = "ahead of" if offset > 0 else "behind"
    text = f"local clock {abs(offset):.0f} s {where} {service}"
    if abs(offset) > CLOCK_FAIL_SECONDS:
        return Check(
            name,
            False,
            text + " (tokens are refused beyond 5 minutes)",
            "sync the clock with NTP (e.g. `timedatectl set-ntp true`)",
        )
    if abs(offset) > CLOCK_WARN_SECONDS:
        return Check(name, True, text, "sync the clock with NTP", warn=True)
    if abs(offset) <= 2:  # Date has a resolution of one second, plus the round trip
        text = f"in step with {service} (within 2 s)"
    return Check(name, True, text)


# ----------------------------------------------------------------------------------------------- Entra


_AADSTS_FIXES: dict[str, str] = {
    "7000215": "the client secret is wrong: create a new one in Entra (Certificates & secrets) and store its *value* (not its id) where {ref} points",
    "7000222": "the client secret has expired: create a new one in Entra (Certificates & secrets) and update {ref}",
    "700016": "no app with entra.client_id in this tenant: check entra.client_id and entra.tenant_id",
    "90002": "the tenant is unknown: check entra.tenant_id (the tenant's domain or id)",
    "900023": "the tenant is unknown: check entra.tenant_id (the tenant's domain or id)",
    "700027": "the certificate is not registered on the app, or its key does not match: upload entra-cert.pem "
    "(`az ad app credential reset --id APP_ID --cert @entra-cert.pem --append`) and check entra.certificate.thumbprint",
    "700024": "the signed assertion is outside its valid time: sync the clock with NTP",
    "7000218": "no credential was sent: configure entra.client_secret or entra.certificate",
    "50027": "the signed assertion is malformed: check entra.certificate.private_key",
    "1002012": "check entra.graph_url (the scope is <graph_url>/.default)",
}


def _entra_fix(message: str, config: Config) -> str:
    cert = config.entra.certificate
    ref = (
        str(config.entra.client_secret)
        if config.entra.client_secret is not None
        else str(cert.private_key)
        if cert
        else ""
    )
    for code in re.findall(r"AADSTS(\d+)|\[(\d+)", message):
        for c in code:
            if c and c in _AADSTS_FIXES:
                return _AADSTS_FIXES[c].format(ref=ref)
    if "expired" in message and "certificate" in message:
        return _AADSTS_FIXES["700027"]
    return "check entra.tenant_id, entra.client_id and the credential against the app registration in Entra"


def check_entra_token(config: Config) -> tuple[Check, Any]:
    """Acquire a Graph token with the configured credential, through the connector's msal app.

    Returns the check and the ``GraphAuth`` (an ``httpx.Auth`` holding the token) or ``None``.
    """
    from scimflow.connectors.graph import GraphSource

    name = "Entra token"
    source = GraphSource(config.entra, ca_bundle=config.ca_bundle, policy=_POLICY)
    try:
        token = source.auth.token()
    except AuthError as exc:
        return Check(name, False, str(exc), _entra_fix(str(exc), config)), None
    except ConnectorError as exc:
        return Check(
            name,
            False,
            str(exc),
            "check entra.authority_host and entra.tenant_id (the tenant's sign-in metadata is unreachable)",
        ), None
    finally:
        source.close()
    roles = _token_roles(token)
    how = "certificate" if config.entra.certificate is not None else "client secret"
    detail = f"token acquired with the {how}"
    if roles is not None:
        detail += f"; application permissions: {', '.join(sorted(roles)) or 'none'}"
    return Check(name, True, detail), source.auth


def _token_roles(token: str) -> list[str] | None:
    """The ``roles`` claim of a JWT access token (not verified: only read for advice), or ``None``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return [str(r) for r in roles] if isinstance(roles, list) else None


def _graph_error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    err = body.get("error") if isinstance(body, dict) else None
    return str(err.get("code", "")) if isinstance(err, dict) else ""


def check_graph_permissions(config: Config, auth: httpx.Auth) -> list[Check]:
    """Probe the reads scimflow makes; a 403 ``Authorization_RequestDenied`` names the missing permission."""
    probes = (
        ("User.Read.All", "/v1.0/users", {"$top": "1", "$select": "id"}),
        ("GroupMember.Read.All", "/v1.0/groups", {"$top": "1", "$select": "id"}),
    )
    checks: list[Check] = []
    with _client(config.ca_bundle, base_url=config.entra.graph_url, auth=auth) as client:
        for permission, path, params in probes:
            name = f"Graph permission {permission}"
            try:
                response = send(client, "GET", path, params=params, policy=_POLICY, ok_statuses=frozenset({403}))
            except AuthError as exc:
                checks.append(
                    Check(name, False, f"Graph refused the token: {exc}", "check entra.graph_url and the app's tenant")
                )
                continue
            except ConnectorError as exc:
                checks.append(Check(name, False, str(exc), "check entra.graph_url"))
                continue
            if response.status_code == 403:
                code = _graph_error_code(response) or "403"
                checks.append(
                    Check(
                        name,
                        False,
                        f"GET {path} → 403 {code}: the app lacks {permission}",
                        _GRANT.format(perm=permission),
                    )
                )
                continue
            checks.append(Check(name, True, f"GET {path} → {response.status_code}"))
            if permission == "GroupMember.Read.All":
                checks[-1] = _probe_members(client, response, name) or checks[-1]
    return checks


def _probe_members(client: httpx.Client, groups: httpx.Response, name: str) -> Check | None:
    """With a group at hand, also read its transitive members (what ``in_group`` rules need)."""
    try:
        value = groups.json().get("value") or []
        gid = str(value[0]["id"]) if value else None
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        gid = None
    if not gid:
        return None
    path = f"/v1.0/groups/{gid}/transitiveMembers"
    try:
        response = send(
            client, "GET", path, params={"$top": "1", "$select": "id"}, policy=_POLICY, ok_statuses=frozenset({403})
        )
    except NotFoundError:
        return None  # the group vanished meanwhile: nothing to learn
    except ConnectorError as exc:
        return Check(name, False, str(exc), "check entra.graph_url")
    if response.status_code == 403:
        return Check(
            name,
            False,
            "GET /v1.0/groups/{id}/transitiveMembers → 403: the app cannot read memberships",
            _GRANT.format(perm="GroupMember.Read.All"),
        )
    return Check(name, True, "GET /v1.0/groups and /groups/{id}/transitiveMembers → 200")


def check_least_privilege(auth: Any) -> Check | None:
    """Warn when the token's roles go beyond what scimflow needs (only when the token lists them)."""
    try:
        roles = _token_roles(auth.token())
    except ConnectorError:
        return None
    if roles is None:
        return None
    extra = sorted(set(roles) - set(REQUIRED_GRAPH_PERMISSIONS))
    if not extra:
        return Check("Graph least privilege", True, "only User.Read.All and GroupMember.Read.All are granted")
    return Check(
        "Graph least privilege",
        True,
        f"the app also has {', '.join(extra)}, which scimflow does not need",
        "remove them from the app's API permissions (a leaked credential should read no more than users and memberships)",
        warn=True,
    )


# ------------------------------------------------------------------------------------------ SuperOffice


def _superoffice_fix(message: str) -> str:
    text = message.lower()
    if "system user" in text:
        return (
            "the tenant admin must approve the app (sign in to it once and click I Approve; docs/setup.md step 2), "
            "or the system user token was revoked: get a new one and update superoffice.system_user_token"
        )
    if "application token" in text or "apptoken" in text:
        return "superoffice.client_secret must be the app's client secret (application token) from the Developer Portal"
    if "context" in text or "tenant" in text:
        return "check superoffice.context_identifier (e.g. Cust12345)"
    if "signature" in text or "public key" in text or "private key" in text:
        return "superoffice.private_key must be the RSA key the Developer Portal gave this app (converted to PEM)"
    if "too old" in text or "future" in text or "timestamp" in text:
        return "sync the clock with NTP (the signed token's timestamp must be within 5 minutes)"
    return "check superoffice.login_url, client_secret, system_user_token and private_key"


def check_superoffice_login(config: Config) -> tuple[Check, Any]:
    """Authenticate the system user (signed token → ticket) through the connector's login flow.

    Returns the check and the ``SystemUserAuth`` holding the ticket, or ``None``.
    """
    from scimflow.connectors.superoffice import SuperOfficeTarget

    name = "SuperOffice system user"
    target = SuperOfficeTarget(config.superoffice, ca_bundle=config.ca_bundle, policy=_POLICY)
    auth = target.auth
    try:
        # An httpx.Auth flow attaches the ticket before the request goes out: this logs in, sends nothing.
        next(auth.sync_auth_flow(httpx.Request("GET", config.superoffice.webapi_url)))
    except AuthError as exc:
        target.close()
        return Check(name, False, str(exc), _superoffice_fix(str(exc))), None
    except ConnectorError as exc:
        target.close()
        return Check(name, False, str(exc), "check superoffice.login_url"), None
    return Check(name, True, f"ticket obtained for {config.superoffice.context_identifier}"), _Ticket(target)


@dataclass
class _Ticket:
    """Keeps the target (and its login client) open while its auth is used."""

    target: Any

    @property
    def auth(self) -> Any:
        return self.target.auth

    def close(self) -> None:
        self.target.close()


def check_superoffice_api(config: Config, ticket: Any) -> Check:
    """Read one user through the Web API with the ticket (``GET /api/v1/User?$top=1``)."""
    name = "SuperOffice Web API"
    base = config.superoffice.webapi_url.rstrip("/") + "/"
    try:
        with _client(
            config.ca_bundle, base_url=base, auth=ticket.auth, headers={"Accept": "application/json"}
        ) as client:
            response = send(
                client, "GET", "api/v1/User", params={"$top": "1", "$select": "associateDbId"}, policy=_POLICY
            )
    except NotFoundError as exc:
        return Check(
            name,
            False,
            str(exc),
            "superoffice.webapi_url must end with the tenant, e.g. https://online.superoffice.com/Cust12345",
        )
    except AuthError as exc:
        fix = (
            "superoffice.client_secret (sent as SO-AppToken) is refused: use the app's client secret"
            if exc.status == 403
            else "the Web API refuses the ticket: check that webapi_url and login_url belong to the same environment"
        )
        return Check(name, False, str(exc), fix)
    except ConnectorError as exc:
        return Check(name, False, str(exc), "check superoffice.webapi_url")
    finally:
        ticket.close()
    return Check(name, True, f"GET {base}api/v1/User → {response.status_code}")


# ------------------------------------------------------------------------------------------------ all


def run_checks(path: Path) -> list[Check]:
    """Run every check for the configuration at ``path``, in dependency order."""
    first, config = check_config(path)
    checks = [first]
    if config is None:
        return checks
    ca = check_ca_bundle(config)
    if ca is not None:
        checks.append(ca)
    secret_checks, bad = check_secrets(config)
    checks += secret_checks
    cert = check_entra_certificate(config)
    if cert is not None:
        checks.append(cert)
    reachable: set[str] = set()
    for ep in endpoints(config):
        results = check_endpoint(ep, config.ca_bundle)
        checks += results
        if results[0].ok:
            reachable.update(ep.keys)
    checks.append(
        check_clock("Graph", config.entra.graph_url + "/v1.0/", config.ca_bundle)
        if "entra.graph_url" in reachable
        else _skip("clock vs Graph", "Graph is unreachable")
    )
    checks.append(
        check_clock("SuperOffice", config.superoffice.login_url + "/.well-known/jwks", config.ca_bundle)
        if "superoffice.login_url" in reachable
        else _skip("clock vs SuperOffice", "the login service is unreachable")
    )
    checks += _entra_checks(config, reachable, bad)
    checks += _superoffice_checks(config, reachable, bad)
    return checks


def _entra_checks(config: Config, reachable: set[str], bad: set[str]) -> list[Check]:
    entra_secrets = {k for k in bad if k.startswith("entra.")}
    if "entra.authority_host" not in reachable or entra_secrets:
        why = (
            "the sign-in endpoint is unreachable"
            if "entra.authority_host" not in reachable
            else f"{', '.join(sorted(entra_secrets))} did not resolve"
        )
        return [
            _skip("Entra token", why),
            *(_skip(f"Graph permission {p}", "no token") for p in REQUIRED_GRAPH_PERMISSIONS),
        ]
    token_check, auth = check_entra_token(config)
    if auth is None:
        return [token_check, *(_skip(f"Graph permission {p}", "no token") for p in REQUIRED_GRAPH_PERMISSIONS)]
    if "entra.graph_url" not in reachable:
        return [
            token_check,
            *(_skip(f"Graph permission {p}", "Graph is unreachable") for p in REQUIRED_GRAPH_PERMISSIONS),
        ]
    out = [token_check, *check_graph_permissions(config, auth)]
    least = check_least_privilege(auth)
    if least is not None:
        out.append(least)
    return out


def _superoffice_checks(config: Config, reachable: set[str], bad: set[str]) -> list[Check]:
    so_secrets = {k for k in bad if k.startswith("superoffice.")}
    if "superoffice.login_url" not in reachable or so_secrets:
        why = (
            "the login service is unreachable"
            if "superoffice.login_url" not in reachable
            else f"{', '.join(sorted(so_secrets))} did not resolve"
        )
        return [_skip("SuperOffice system user", why), _skip("SuperOffice Web API", "no ticket")]
    login, ticket = check_superoffice_login(config)
    if ticket is None:
        return [login, _skip("SuperOffice Web API", "no ticket")]
    if "superoffice.webapi_url" not in reachable:
        ticket.close()
        return [login, _skip("SuperOffice Web API", "the Web API is unreachable")]
    return [login, check_superoffice_api(config, ticket)]
