"""SuperOffice emulator served over real HTTPS on loopback, and a connector configured against it."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.config import SecretRef, SuperOfficeConfig
from scimflow.connectors.http import ssl_context
from scimflow.connectors.superoffice import SuperOfficeTarget
from scimflow.emulators.pki import TlsFiles, make_tls_files, write_private
from scimflow.emulators.serve import ServedApp, serve_in_thread
from scimflow.emulators.superoffice import SuperOfficeEmulator, SuperOfficeEmulatorSettings

CTX = "Cust12345"
CLIENT_ID = "so-client-0001"
APP_TOKEN = "app-token-Sup3rS3cret-0001"
SYSTEM_USER_TOKEN = "scimflow-SYSUSER-7f3a9c"


def _key_pem() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and loopback server certificate."""
    return make_tls_files(tmp_path_factory.mktemp("so-tls"))


@pytest.fixture(scope="session")
def app_key() -> tuple[bytes, bytes]:
    """The SuperOffice app's RSA key pair (private PEM, public PEM)."""
    return _key_pem()


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory, app_key: tuple[bytes, bytes]) -> Path:
    """Secret files (0600) the config refers to with ``file:``."""
    folder = tmp_path_factory.mktemp("so-secrets")
    write_private(folder / "app-token", APP_TOKEN)
    write_private(folder / "system-user-token", SYSTEM_USER_TOKEN)
    write_private(folder / "app.pem", app_key[0])
    other, _ = _key_pem()
    write_private(folder / "foreign.pem", other)
    return folder


class HookedTransport(httpx.BaseTransport):
    """The real HTTPS transport with hooks around each request: network events, not patched code.

    ``before`` sees each request just before it is sent; ``rewrite`` may change a JSON answer's body on its
    way back (a server or proxy answering differently); it returns ``None`` to leave the body as it is.
    """

    def __init__(
        self,
        ca: Path,
        before: Callable[[httpx.Request], None] | None = None,
        rewrite: Callable[[httpx.Request, Any], Any] | None = None,
    ) -> None:
        self._inner = httpx.HTTPTransport(verify=ssl_context(ca), retries=0)
        self._before = before
        self._rewrite = rewrite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._before is not None:
            self._before(request)
        response = self._inner.handle_request(request)
        if self._rewrite is None or not response.headers.get("content-type", "").startswith("application/json"):
            return response
        response.read()
        body = self._rewrite(request, response.json())
        if body is None:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")}
        return httpx.Response(response.status_code, headers=headers, json=body, request=request)

    def close(self) -> None:
        self._inner.close()


@dataclass
class SoEnv:
    emulator: SuperOfficeEmulator
    served: ServedApp
    target: SuperOfficeTarget
    config: SuperOfficeConfig
    ca: Path
    opened: list[httpx.Client] = field(default_factory=list)

    def make_target(self, transport: httpx.BaseTransport | None = None, **overrides: Any) -> SuperOfficeTarget:
        cfg = self.config.model_copy(update=overrides)
        return SuperOfficeTarget(cfg, ca_bundle=self.ca, transport=transport)

    def hooked_target(
        self,
        before: Callable[[httpx.Request], None] | None = None,
        rewrite: Callable[[httpx.Request, Any], Any] | None = None,
    ) -> SuperOfficeTarget:
        """A target whose requests go over real HTTPS through a :class:`HookedTransport`."""
        return self.make_target(transport=HookedTransport(self.ca, before, rewrite))

    def web_api(self) -> httpx.Client:
        """A plain client of the Web API carrying the target's ticket (to read and write carriers as they are)."""
        client = httpx.Client(
            base_url=self.config.webapi_url.rstrip("/") + "/",
            verify=ssl_context(self.ca),
            auth=self.target.auth,
            headers={"Accept": "application/json"},
            trust_env=False,
        )
        self.opened.append(client)  # closed with the emulator
        return client

    def foreign_target(self) -> SuperOfficeTarget:
        """A target whose private key is not the one registered for the app."""
        path = str(self.config.private_key.path).replace("app.pem", "foreign.pem")
        return self.make_target(private_key=SecretRef(f"file:{path}"))

    def user(self, user_name: str) -> dict[str, Any] | None:
        snap = self.emulator.snapshot()
        return next((u for u in snap["users"] if u["UserName"].lower() == user_name.lower()), None)


def make_config(origin: str, secrets_dir: Path, *, key: str = "app.pem") -> SuperOfficeConfig:
    return SuperOfficeConfig(
        webapi_url=f"{origin}/{CTX}",
        login_url=f"{origin}/login",
        context_identifier=CTX,
        client_id=CLIENT_ID,
        client_secret=f"file:{secrets_dir / 'app-token'}",
        system_user_token=f"file:{secrets_dir / 'system-user-token'}",
        private_key=f"file:{secrets_dir / key}",
    )


@pytest.fixture
def so_factory(
    tls: TlsFiles, app_key: tuple[bytes, bytes], secrets_dir: Path, superoffice_fixture: dict[str, Any]
) -> Iterator[Callable[..., SoEnv]]:
    """Build a fresh emulator (fixture data unless given) served over HTTPS, and a target for it."""
    started: list[SoEnv] = []

    def build(data: dict[str, Any] | None = None, **settings: Any) -> SoEnv:
        emulator = SuperOfficeEmulator(
            copy.deepcopy(data if data is not None else superoffice_fixture),
            SuperOfficeEmulatorSettings(
                context_identifier=CTX,
                client_id=CLIENT_ID,
                app_token=APP_TOKEN,
                system_user_token=SYSTEM_USER_TOKEN,
                app_public_key_pem=app_key[1],
                seed=7,
                **settings,
            ),
        )
        served = serve_in_thread(emulator.app, certfile=str(tls.server_cert), keyfile=str(tls.server_key))
        config = make_config(served.origin, secrets_dir)
        env = SoEnv(emulator, served, SuperOfficeTarget(config, ca_bundle=tls.ca_cert), config, tls.ca_cert)
        started.append(env)
        return env

    yield build
    for env in started:
        for client in env.opened:
            client.close()
        env.target.close()
        env.served.stop()


@pytest.fixture
def so(so_factory: Callable[..., SoEnv]) -> SoEnv:
    """The worked example's tenant behind a fresh emulator."""
    return so_factory()
