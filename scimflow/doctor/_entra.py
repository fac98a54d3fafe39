"""Doctor's Entra checks: the certificate credential, a Graph token, the two Graph permissions, least privilege."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from scimflow.config import Config, ConfigError
from scimflow.connectors.errors import AuthError, ConnectorError, NotFoundError
from scimflow.connectors.http import send
from scimflow.doctor._common import POLICY, Check, expiry_check, skip, verifying_client

__all__ = [
    "REQUIRED_GRAPH_PERMISSIONS",
    "check_entra_certificate",
    "check_entra_token",
    "check_graph_permissions",
    "check_least_privilege",
    "entra_checks",
]

#: The Graph application permissions scimflow needs, and nothing more.
REQUIRED_GRAPH_PERMISSIONS: tuple[str, ...] = ("User.Read.All", "GroupMember.Read.All")
_GRANT = "in Entra: App registrations → scimflow → API permissions → add Microsoft Graph application permission {perm}, then Grant admin consent"


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
        return skip(name, str(exc))
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
    return expiry_check(
        name,
        certificate.not_valid_after_utc,
        today,
        renew=(
            "make a new certificate (docs/setup.md step 1), upload it with `az ad app credential reset --append`, "
            "then update the key, thumbprint and public_certificate"
        ),
    )


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
    source = GraphSource(config.entra, ca_bundle=config.ca_bundle, policy=POLICY)
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
    with verifying_client(config.ca_bundle, base_url=config.entra.graph_url, auth=auth) as client:
        for permission, path, params in probes:
            name = f"Graph permission {permission}"
            try:
                response = send(client, "GET", path, params=params, policy=POLICY, ok_statuses=frozenset({403}))
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
            client, "GET", path, params={"$top": "1", "$select": "id"}, policy=POLICY, ok_statuses=frozenset({403})
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


def entra_checks(config: Config, reachable: set[str], bad: set[str]) -> list[Check]:
    """Token, then permissions, then least privilege; each skipped when its prerequisite (``reachable`` config
    keys, no ``bad`` entra secret) is missing."""
    entra_secrets = {k for k in bad if k.startswith("entra.")}
    if "entra.authority_host" not in reachable or entra_secrets:
        why = (
            "the sign-in endpoint is unreachable"
            if "entra.authority_host" not in reachable
            else f"{', '.join(sorted(entra_secrets))} did not resolve"
        )
        return [
            skip("Entra token", why),
            *(skip(f"Graph permission {p}", "no token") for p in REQUIRED_GRAPH_PERMISSIONS),
        ]
    token_check, auth = check_entra_token(config)
    if auth is None:
        return [token_check, *(skip(f"Graph permission {p}", "no token") for p in REQUIRED_GRAPH_PERMISSIONS)]
    if "entra.graph_url" not in reachable:
        return [
            token_check,
            *(skip(f"Graph permission {p}", "Graph is unreachable") for p in REQUIRED_GRAPH_PERMISSIONS),
        ]
    out = [token_check, *check_graph_permissions(config, auth)]
    least = check_least_privilege(auth)
    if least is not None:
        out.append(least)
    return out
