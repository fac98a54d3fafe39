"""Doctor's SuperOffice Web API checks (``target: superoffice``): the system-user login, then the Web API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from scimflow.config import Config
from scimflow.connectors.errors import AuthError, ConnectorError, NotFoundError
from scimflow.connectors.http import send
from scimflow.doctor._common import POLICY, Check, skip, verifying_client

__all__ = ["check_superoffice_api", "check_superoffice_login", "superoffice_checks"]


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
    so = config.require_superoffice()
    target = SuperOfficeTarget(so, ca_bundle=config.ca_bundle, policy=POLICY)
    auth = target.auth
    try:
        # An httpx.Auth flow attaches the ticket before the request goes out: this logs in, sends nothing.
        next(auth.sync_auth_flow(httpx.Request("GET", so.webapi_url)))
    except AuthError as exc:
        target.close()
        return Check(name, False, str(exc), _superoffice_fix(str(exc))), None
    except ConnectorError as exc:
        target.close()
        return Check(name, False, str(exc), "check superoffice.login_url"), None
    return Check(name, True, f"ticket obtained for {so.context_identifier}"), _Ticket(target)


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
    base = config.require_superoffice().webapi_url.rstrip("/") + "/"
    try:
        with verifying_client(
            config.ca_bundle, base_url=base, auth=ticket.auth, headers={"Accept": "application/json"}
        ) as client:
            response = send(
                client, "GET", "api/v1/User", params={"$top": "1", "$select": "associateDbId"}, policy=POLICY
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


def superoffice_checks(config: Config, reachable: set[str], bad: set[str]) -> list[Check]:
    """The login, then the Web API with its ticket; each skipped when its prerequisite is missing."""
    so_secrets = {k for k in bad if k.startswith("superoffice.")}
    if "superoffice.login_url" not in reachable or so_secrets:
        why = (
            "the login service is unreachable"
            if "superoffice.login_url" not in reachable
            else f"{', '.join(sorted(so_secrets))} did not resolve"
        )
        return [skip("SuperOffice system user", why), skip("SuperOffice Web API", "no ticket")]
    login, ticket = check_superoffice_login(config)
    if ticket is None:
        return [login, skip("SuperOffice Web API", "no ticket")]
    if "superoffice.webapi_url" not in reachable:
        ticket.close()
        return [login, skip("SuperOffice Web API", "the Web API is unreachable")]
    return [login, check_superoffice_api(config, ticket)]
