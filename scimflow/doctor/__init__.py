"""``scimflow doctor``: check that a configuration can work, and say how to fix what cannot.

Each check is a plain function returning :class:`Check` values (``name``, ``ok``, ``detail``, ``fix``);
:func:`run_checks` runs them in dependency order, skipping the checks whose prerequisite failed.
They talk to the configured endpoints exactly as the sync does: TLS verification always on, the
config's ``ca_bundle`` added to the system trust store, the connectors' own authentication
(:class:`~scimflow.connectors.graph.GraphSource`'s msal app, :class:`~scimflow.connectors.superoffice.SuperOfficeTarget`'s
system-user login, :class:`~scimflow.connectors.scim.ScimClient`'s bearer token). An emulator and the real
service are checked by the same code.

One module per concern:

- :mod:`._common`: the :class:`Check` result, the fail-fast retry policy, the verifying client;
- :mod:`._config`: the configuration loads, the ``ca_bundle`` loads, and every secret reference of the
  configured target resolves (named by its reference, never its value) to usable key material;
- :mod:`._network`: each endpoint answers over TLS (DNS failure, refused connection, timeout and an untrusted
  certificate told apart), its certificate is not about to expire (< 30 days warns, expired fails); the
  clock: the ``Date`` header of Graph and SuperOffice against local UTC (> 5 minutes fails);
- :mod:`._entra`: the certificate credential (expiry, thumbprint, key pair), a token, and the two Graph
  permissions (``User.Read.All``: ``GET /v1.0/users``; ``GroupMember.Read.All``: ``GET /v1.0/groups`` and
  ``transitiveMembers``), plus a warning for permissions beyond those when the token lists its roles;
- :mod:`._superoffice` (``target: superoffice``): the system user (Authenticate), then the Web API with the ticket;
- :mod:`._scim` (``target: scim``): the token accepted (Entra's "Test Connection"), the Groups endpoint,
  whether listing and ETags are supported, and which dialect fits.
"""

from __future__ import annotations

from pathlib import Path

from scimflow.config import Config
from scimflow.doctor._common import CERT_WARN_DAYS, CLOCK_FAIL_SECONDS, Check, skip
from scimflow.doctor._config import check_ca_bundle, check_config, check_secrets
from scimflow.doctor._entra import (
    REQUIRED_GRAPH_PERMISSIONS,
    check_entra_certificate,
    check_entra_token,
    check_graph_permissions,
    check_least_privilege,
    entra_checks,
)
from scimflow.doctor._network import Endpoint, check_clock, check_endpoint, endpoints
from scimflow.doctor._scim import SCIM_CHECKS, check_scim, scim_checks
from scimflow.doctor._superoffice import check_superoffice_api, check_superoffice_login, superoffice_checks

__all__ = [
    "CERT_WARN_DAYS",
    "CLOCK_FAIL_SECONDS",
    "REQUIRED_GRAPH_PERMISSIONS",
    "SCIM_CHECKS",
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
    "check_scim",
    "check_secrets",
    "check_superoffice_api",
    "check_superoffice_login",
    "endpoints",
    "run_checks",
]


def run_checks(path: Path) -> list[Check]:
    """Run every check for the configuration at ``path``, in dependency order.

    With ``target: scim`` the SuperOffice checks are not run (the config has no ``superoffice:`` block) and
    the SCIM checks are; with ``target: superoffice`` the reverse.
    """
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
        else skip("clock vs Graph", "Graph is unreachable")
    )
    checks += _target_clock(config, reachable)
    checks += entra_checks(config, reachable, bad)
    if config.target == "scim":
        checks += scim_checks(config, reachable, bad)
    else:
        checks += superoffice_checks(config, reachable, bad)
    return checks


def _target_clock(config: Config, reachable: set[str]) -> list[Check]:
    """The clock against SuperOffice's login service (its signed tokens are time-bound); none for SCIM (bearer)."""
    if config.target == "scim" or config.superoffice is None:
        return []
    if "superoffice.login_url" not in reachable:
        return [skip("clock vs SuperOffice", "the login service is unreachable")]
    return [check_clock("SuperOffice", config.superoffice.login_url + "/.well-known/jwks", config.ca_bundle)]
