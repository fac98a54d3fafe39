"""Doctor's SCIM target checks (``target: scim``): token, Users and Groups endpoints, listing, ETags, dialect.

Read-only, through :func:`scimflow.connectors.scim.probe` and :class:`~scimflow.connectors.scim.ScimClient`
(the writer's own client: TLS verified with the config's ``ca_bundle``, the token only in its
``Authorization`` header). The token check is Entra's "Test Connection": a filter GET for a random
``userName`` answered 200 with an empty ListResponse. Nothing is created, and the token is never shown.
"""

from __future__ import annotations

import secrets

from scimflow.config import Config, ScimConfig
from scimflow.connectors.errors import AuthError, ConnectorError, NotFoundError, PayloadError
from scimflow.connectors.scim import ScimClient, ScimProbe, probe
from scimflow.doctor._common import POLICY, Check, skip

__all__ = ["SCIM_CHECKS", "check_scim", "scim_checks"]

#: The names of the SCIM checks, in order (skipped together when a prerequisite fails).
SCIM_CHECKS: tuple[str, ...] = ("SCIM token", "SCIM Groups", "SCIM listing", "SCIM ETags", "SCIM dialect")
_CONFIG_PLACE = "Identity Manager → SCIM Sync Config (docs/setup-online.md step 3)"


def _token_fix(scim: ScimConfig) -> str:
    return (
        f"scim.token ({scim.token}) must hold the Token shown in {_CONFIG_PLACE}, or your SCIM provider's bearer "
        "token; copy it again if it was regenerated"
    )


def _base_fix(scim: ScimConfig) -> str:
    return (
        f"scim.base_url ({scim.base_url}) must be the URL shown in {_CONFIG_PLACE}, or your provider's SCIM base; "
        "scimflow appends /Users and /Groups to it"
    )


def _failed_probe(exc: ConnectorError, scim: ScimConfig) -> Check:
    """The token check, failed, with the fix its error calls for."""
    name = SCIM_CHECKS[0]
    if isinstance(exc, AuthError) and exc.status == 401:
        return Check(name, False, f"the SCIM server refused the token (401): {exc}", _token_fix(scim))
    if isinstance(exc, AuthError):
        return Check(
            name,
            False,
            f"the token is not allowed to read Users ({exc.status}): {exc}",
            "give the token's client read access to Users and Groups on the SCIM server, or use the token from "
            + _CONFIG_PLACE,
        )
    if isinstance(exc, NotFoundError):
        return Check(name, False, f"no SCIM Users endpoint: {exc}", _base_fix(scim))
    if isinstance(exc, PayloadError):
        return Check(name, False, f"the answer is not SCIM JSON: {exc}", _base_fix(scim))
    return Check(name, False, str(exc), "check scim.base_url and that the SCIM server is up")


def _token_check(found: ScimProbe) -> Check:
    name = SCIM_CHECKS[0]
    if found.token_accepted:
        return Check(name, True, 'accepted: GET /Users?filter=userName eq "<random>" → 200, empty ListResponse')
    return Check(
        name,
        False,
        "the token is accepted, but a filter GET for a random userName did not answer an empty ListResponse",
        'the server must honour `filter=userName eq "…"` (scimflow and Entra match users by it); '
        "ask the provider, or check scim.base_url",
    )


def _groups_check(client: ScimClient, scim: ScimConfig) -> Check:
    """A filter GET on ``/Groups`` for a random ``displayName`` (members left out), as Entra sends before a create."""
    name = SCIM_CHECKS[1]
    try:
        hit = client.find_group(f"scimflow-probe-{secrets.token_hex(8)}")
    except NotFoundError as exc:
        return Check(
            name,
            False,
            f"no SCIM Groups endpoint: {exc}",
            "the computed groups need /Groups: " + _base_fix(scim),
        )
    except ConnectorError as exc:
        return Check(name, False, str(exc), 'the computed groups need GET /Groups?filter=displayName eq "…"')
    if hit is not None:
        return Check(
            name,
            False,
            "a filter GET for a random group displayName found a group",
            'the server must honour `filter=displayName eq "…"` on /Groups',
        )
    return Check(name, True, 'GET /Groups?filter=displayName eq "<random>" → 200, empty ListResponse')


def _listing_check(found: ScimProbe) -> Check:
    name = SCIM_CHECKS[2]
    if found.listing:
        return Check(name, True, "GET /Users lists users (paged with startIndex/count)")
    return Check(
        name,
        True,
        "GET /Users without a filter is refused: users are looked up one filter GET each "
        "(userName, then externalId), so reads take one request per user and SCIM users no Entra user names "
        "stay unseen",
        "nothing to fix if the provider does not list; reads are slower",
        warn=True,
    )


def _etag_check(found: ScimProbe, scim: ScimConfig) -> Check:
    name = SCIM_CHECKS[3]
    if scim.dialect == "entra":
        served = "supported by the server" if found.etags else "not advertised by the server"
        return Check(name, True, f"ETags are {served}; the entra dialect never sends If-Match (as Entra)")
    if found.etags:
        return Check(name, True, "supported (ServiceProviderConfig etag.supported): user PATCHes carry If-Match")
    why = "no /ServiceProviderConfig" if not found.service_provider_config else "etag.supported is false"
    return Check(name, True, f"not supported ({why}): PATCHes go without If-Match")


def _dialect_check(found: ScimProbe, scim: ScimConfig) -> Check:
    name = SCIM_CHECKS[4]
    if found.service_provider_config and found.patch is False:
        return Check(
            name,
            False,
            "the server's ServiceProviderConfig says PATCH is not supported",
            "scimflow updates users and memberships with PATCH only (as Entra): this server cannot be a target",
        )
    if scim.dialect == "entra":
        if found.dialect_hint == "entra":
            return Check(
                name,
                True,
                "entra fits: no /ServiceProviderConfig, as SuperOffice's gateway (that the gateway takes Entra's "
                "requests shows only on a first apply)",
            )
        return Check(
            name,
            True,
            "entra configured; the server also describes itself as an RFC 7644 provider (PATCH supported), "
            "so dialect: rfc would fit too (keep entra for SuperOffice's gateway)",
        )
    if found.dialect_hint == "entra":
        return Check(
            name,
            True,
            "rfc configured, but the server does not describe itself (no /ServiceProviderConfig), "
            "as SuperOffice's gateway does not",
            "set scim.dialect: entra for SuperOffice's gateway (it is built for Entra's requests); keep rfc only "
            "if the provider documents RFC 7644 PATCHes",
            warn=True,
        )
    return Check(name, True, "rfc fits: the server describes itself as an RFC 7644 provider (PATCH supported)")


def check_scim(config: Config) -> list[Check]:
    """Probe the SCIM server read-only: the five :data:`SCIM_CHECKS`, later ones skipped when the token fails."""
    scim = config.require_scim()
    try:
        client = ScimClient(scim, ca_bundle=config.ca_bundle, policy=POLICY)
    except ConnectorError as exc:
        return [Check(SCIM_CHECKS[0], False, str(exc), _base_fix(scim))] + [
            skip(n, "no SCIM client") for n in SCIM_CHECKS[1:]
        ]
    with client:
        try:
            found = probe(client)
        except ConnectorError as exc:
            return [_failed_probe(exc, scim)] + [skip(n, "the token check failed") for n in SCIM_CHECKS[1:]]
        token = _token_check(found)
        return [
            token,
            _groups_check(client, scim),
            _listing_check(found),
            _etag_check(found, scim),
            _dialect_check(found, scim),
        ]


def scim_checks(config: Config, reachable: set[str], bad: set[str]) -> list[Check]:
    """:func:`check_scim`, or every SCIM check skipped when the server is unreachable or the token did not resolve."""
    if "scim.base_url" not in reachable:
        return [skip(n, "the SCIM server is unreachable") for n in SCIM_CHECKS]
    if "scim.token" in bad:
        return [skip(n, "scim.token did not resolve") for n in SCIM_CHECKS]
    return check_scim(config)
