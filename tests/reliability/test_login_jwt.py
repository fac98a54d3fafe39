"""The SuperOffice login JWT's audience is always checked against the app's client id.

A login service is played by an ``httpx.MockTransport`` handler that signs what the test asks for with a
key it publishes in its JWKS, so only the audience differs between the accepted and the refused tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.connectors.errors import AuthError
from scimflow.connectors.superoffice import TICKET_CLAIM, SystemUserAuth

LOGIN = "https://login.test/login"
CLIENT_ID = "0123456789abcdef0123456789abcdef"
_MISSING = object()


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The login service's signing key and the app's key (signs the system user token)."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def _login_service(signing: rsa.RSAPrivateKey, aud: object) -> Callable[[httpx.Request], httpx.Response]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login/.well-known/jwks":
            return httpx.Response(200, json={"keys": [jwk]})
        assert request.url.path == "/login/api/PartnerSystemUser/Authenticate"
        now = int(time.time())
        claims: dict[str, Any] = {"iss": "https://login.test", "iat": now, "exp": now + 600, TICKET_CLAIM: "7T:t"}
        if aud is not _MISSING:
            claims["aud"] = aud
        token = jwt.encode(claims, signing, algorithm="RS256", headers={"kid": "k1"})
        return httpx.Response(200, json={"IsSuccessful": True, "ErrorMessage": "", "Token": token})

    return handle


def _auth(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], aud: object, client_id: str | None) -> SystemUserAuth:
    signing, app = keys
    login = httpx.Client(transport=httpx.MockTransport(_login_service(signing, aud)))
    return SystemUserAuth(
        login=login,
        login_url=LOGIN,
        context_identifier="Cust1",
        client_id=client_id,
        secrets=lambda: ("app-token", "App-systemusertoken", _pem(app)),
    )


def test_token_for_this_app_is_accepted(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    """A token whose audience is the configured client id yields the ticket."""
    auth = _auth(keys, CLIENT_ID, CLIENT_ID)
    auth.ensure_ticket()
    assert auth.authentications == 1


@pytest.mark.parametrize(
    "aud",
    ["another-app", f"{CLIENT_ID}x", ["another-app", "third-app"], "", _MISSING],
    ids=["foreign", "prefix-of-ours", "foreign-list", "empty", "missing"],
)
def test_token_with_a_foreign_or_missing_audience_is_refused(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], aud: object
) -> None:
    """A validly signed token for another audience (or none) is refused, so no ticket is ever used."""
    auth = _auth(keys, aud, CLIENT_ID)
    with pytest.raises(AuthError, match="did not validate") as info:
        auth.ensure_ticket()
    assert "7T:" not in str(info.value)
    assert auth.authentications == 0


def test_no_client_id_means_no_login(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    """Without superoffice.client_id the audience cannot be checked, so the login is refused up front, naming the key."""
    for missing in (None, ""):
        with pytest.raises(AuthError, match=r"superoffice\.client_id is not set"):
            _auth(keys, "anything", missing)
