"""Host the emulators over HTTPS on loopback and write a ``scimflow.yaml`` that points at them.

This is what ``scimflow emulate`` (and the demo and the end-to-end tests) run::

    with EmulatorHost(graph_data, so_data, folder) as host:
        cfg = load_config(host.config_path)        # secrets are files beside it, 0600
        host.graph.snapshot()                      # the emulators' live state

In ``folder`` it writes a throw-away CA and server certificate (``emulator-ca.pem`` is the config's
``ca_bundle``, so clients keep TLS verification on), the Entra client secret, the SuperOffice app token,
system user token and RSA app key (owner-only files, referred to as ``file:``), then serves
:class:`~scimflow.emulators.graph.GraphEmulator` and
:class:`~scimflow.emulators.superoffice.SuperOfficeEmulator` each on its own origin, and writes the config
only once both accept connections (atomically, so whoever waits for the file can use it at once).

With ``target="scim"`` the second emulator is :class:`~scimflow.emulators.scim.ScimEmulator` instead of
SuperOffice (scim2-server under the ``scim_dialect``'s policy, empty unless ``scim_data`` is given): the
host writes its bearer token to ``scim-token`` (owner-only) and a config with ``target: scim`` and a
``scim:`` block (``base_url``, ``token: file:scim-token``, ``dialect``, ``group_prefix``,
``write_concurrency``) and no ``superoffice:`` block.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scimflow.emulators.pki import make_tls_files, self_signed_certificate, write_private
from scimflow.emulators.serve import ServedApp, serve_in_thread, wait_accepting

__all__ = [
    "DEFAULT_RULES",
    "Emulator",
    "EmulatorFactory",
    "EmulatorHost",
    "EmulatorHostError",
    "HostSecrets",
]

#: The repository's default rule set, used when no rules file is given.
DEFAULT_RULES = (Path(__file__).resolve().parents[2] / "rules" / "default.yaml").resolve()

LOOPBACK = "127.0.0.1"


class Emulator(Protocol):
    """What the host needs of an emulator: an ASGI app and a snapshot of its data."""

    app: Any

    def snapshot(self) -> dict[str, Any]: ...


#: Builds an emulator from its fixture data and a dict of settings fields (the test seam).
EmulatorFactory = Callable[[dict[str, Any], dict[str, Any]], Emulator]


class EmulatorHostError(RuntimeError):
    """The emulators could not be started (a port in use, a server that did not come up)."""


def _graph_factory(data: dict[str, Any], settings: dict[str, Any]) -> Emulator:
    from scimflow.emulators.graph import GraphEmulator, GraphEmulatorSettings

    return GraphEmulator(data, GraphEmulatorSettings(**settings))


def _superoffice_factory(data: dict[str, Any], settings: dict[str, Any]) -> Emulator:
    from scimflow.emulators.superoffice import SuperOfficeEmulator, SuperOfficeEmulatorSettings

    return SuperOfficeEmulator(data, SuperOfficeEmulatorSettings(**settings))


def _scim_factory(data: dict[str, Any], settings: dict[str, Any]) -> Emulator:
    from scimflow.emulators.scim import ScimEmulator, ScimEmulatorSettings

    return ScimEmulator(data, ScimEmulatorSettings(**settings))


@dataclass(frozen=True)
class HostSecrets:
    """The credentials the host generated (the emulators accept them; the config names their files)."""

    entra_client_id: str
    entra_client_secret: str | None
    entra_thumbprint: str | None
    entra_certificate_pem: bytes | None
    superoffice_client_id: str
    app_token: str
    system_user_token: str
    app_private_key_pem: bytes
    app_public_key_pem: bytes
    scim_token: str | None = None

    def __repr__(self) -> str:
        return f"HostSecrets(entra_client_id={self.entra_client_id!r}, superoffice_client_id={self.superoffice_client_id!r}, ...)"


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as exc:
            msg = f"port {port} on {LOOPBACK} is not free: {exc.strerror}"
            raise EmulatorHostError(msg) from None


def _await_started(served: ServedApp, name: str, timeout: float = 20.0) -> None:
    """Wait until uvicorn reports it is serving (accepting alone may be someone else on the port)."""
    deadline = time.monotonic() + timeout
    while not getattr(served.server, "started", False):
        if not served.thread.is_alive():
            msg = f"the {name} emulator stopped while starting on port {served.port} (see the log above)"
            raise EmulatorHostError(msg)
        if time.monotonic() > deadline:
            msg = f"the {name} emulator did not start within {timeout:.0f} s"
            raise EmulatorHostError(msg)
        time.sleep(0.02)


class EmulatorHost:
    """Both emulators on loopback HTTPS, their credentials, and a config file pointing at them.

    Args:
        graph_data: the Graph tenant in the fixture format (``G.json``).
        superoffice_data: the SuperOffice tenant in the fixture format (``S.json``); unused with ``target="scim"``.
        folder: where the CA, the secret files and the config go (created owner-only if missing).
        config_name: the config file's name in ``folder``.
        rules: the rule set the config names (default: the repository's ``rules/default.yaml``).
        graph_port, superoffice_port: fixed ports (default: free ones).
        graph_settings, superoffice_settings: settings fields overriding what the host sets
            (``latency``, ``throttle_rate``, ``rate_limit_rps``, ...).
        entra_auth: the Entra app's credential, a client ``secret`` or a ``certificate``.
        context_identifier: the SuperOffice tenant id (``Cust12345``).
        state_url: the config's ``state_url`` (default: a SQLite file in ``folder/.scimflow``).
        guardrails: the config's ``guardrails`` mapping.
        graph_factory, superoffice_factory: build the emulators (default: the real ones).
        target: ``superoffice`` (the Web API emulator) or ``scim`` (the SCIM emulator instead).
        scim_data: the SCIM emulator's starting Users and Groups (the snapshot format; default empty).
        scim_dialect: the config's ``scim.dialect`` and the SCIM emulator's policy (``entra`` tolerant, ``rfc`` strict).
        scim_port, scim_settings: the SCIM emulator's fixed port and settings overrides.
        group_prefix, write_concurrency: the config's ``scim.group_prefix`` and ``scim.write_concurrency``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        graph_data: dict[str, Any],
        superoffice_data: dict[str, Any],
        folder: Path,
        *,
        config_name: str = "scimflow.yaml",
        rules: Path | None = None,
        graph_port: int | None = None,
        superoffice_port: int | None = None,
        graph_settings: Mapping[str, Any] | None = None,
        superoffice_settings: Mapping[str, Any] | None = None,
        entra_auth: Literal["secret", "certificate"] = "secret",
        tenant_id: str = "contoso.onmicrosoft.com",
        context_identifier: str = "Cust12345",
        state_url: str = "sqlite:///.scimflow/state.db",
        guardrails: Mapping[str, Any] | None = None,
        graph_factory: EmulatorFactory | None = None,
        superoffice_factory: EmulatorFactory | None = None,
        target: Literal["superoffice", "scim"] = "superoffice",
        scim_data: dict[str, Any] | None = None,
        scim_dialect: Literal["entra", "rfc"] = "entra",
        scim_port: int | None = None,
        scim_settings: Mapping[str, Any] | None = None,
        group_prefix: str = "scimflow",
        write_concurrency: int = 4,
        scim_factory: EmulatorFactory | None = None,
    ) -> None:
        if target not in ("superoffice", "scim"):
            msg = f"target must be 'superoffice' or 'scim', not {target!r}"
            raise EmulatorHostError(msg)
        if scim_dialect not in ("entra", "rfc"):
            msg = f"the SCIM dialect must be 'entra' or 'rfc', not {scim_dialect!r}"
            raise EmulatorHostError(msg)
        self._graph_data = graph_data
        self._so_data = superoffice_data
        self.folder = Path(folder).expanduser().resolve()
        self.config_path = self.folder / config_name
        self._rules = Path(rules).expanduser().resolve() if rules is not None else DEFAULT_RULES
        self.target = target
        self._ports = (graph_port, scim_port if target == "scim" else superoffice_port)
        self._graph_overrides = dict(graph_settings or {})
        self._so_overrides = dict(superoffice_settings or {})
        self._entra_auth = entra_auth
        self._tenant_id = tenant_id
        self._ctx = context_identifier
        self._state_url = state_url
        self._guardrails = dict(guardrails or {"max_retire": "5%", "max_changes": 500, "min_source_users": 1})
        self._graph_factory = graph_factory or _graph_factory
        self._so_factory = superoffice_factory or _superoffice_factory
        self._scim_data = dict(scim_data or {"users": [], "groups": []})
        self._scim_dialect = scim_dialect
        self._scim_overrides = dict(scim_settings or {})
        self._group_prefix = group_prefix
        self._write_concurrency = write_concurrency
        self._scim_factory = scim_factory or _scim_factory
        self._graph: Emulator | None = None
        self._so: Emulator | None = None
        self._served: list[ServedApp] = []
        self.secrets: HostSecrets | None = None

    # -- the running pair ----------------------------------------------------------------------------

    @property
    def graph(self) -> Any:
        """The Graph emulator object (its ``snapshot()``, ``request_count``, settings)."""
        if self._graph is None:
            raise EmulatorHostError("the emulator host is not started")
        return self._graph

    @property
    def superoffice(self) -> Any:
        """The SuperOffice emulator object."""
        if self.target != "superoffice":
            raise EmulatorHostError("this emulator host serves a SCIM target, not SuperOffice")
        if self._so is None:
            raise EmulatorHostError("the emulator host is not started")
        return self._so

    @property
    def scim(self) -> Any:
        """The SCIM emulator object (``target="scim"``): its ``snapshot()``, ``stats()``, settings."""
        if self.target != "scim":
            raise EmulatorHostError("this emulator host serves SuperOffice, not a SCIM target")
        if self._so is None:
            raise EmulatorHostError("the emulator host is not started")
        return self._so

    @property
    def graph_origin(self) -> str:
        """``https://127.0.0.1:PORT`` of the Graph emulator (also the authority host)."""
        return self._served_app(0).origin

    @property
    def superoffice_origin(self) -> str:
        """``https://127.0.0.1:PORT`` of the SuperOffice emulator (login under ``/login``)."""
        self.superoffice  # noqa: B018 - raises on a SCIM host
        return self._served_app(1).origin

    @property
    def scim_origin(self) -> str:
        """``https://127.0.0.1:PORT`` of the SCIM emulator (``/_emulator/*`` here)."""
        self.scim  # noqa: B018 - raises on a SuperOffice host
        return self._served_app(1).origin

    @property
    def scim_base_url(self) -> str:
        """The SCIM base URL the config names (``scim_origin`` + ``/scim/v2``)."""
        from scimflow.emulators.scim import SCIM_PATH

        return self.scim_origin + SCIM_PATH

    @property
    def target_origin(self) -> str:
        """The origin of the target's emulator (SuperOffice or SCIM)."""
        return self._served_app(1).origin

    @property
    def ca_bundle(self) -> Path:
        """The CA certificate clients must trust (the config's ``ca_bundle``)."""
        return self.folder / "emulator-ca.pem"

    def _served_app(self, i: int) -> ServedApp:
        if len(self._served) != 2:
            raise EmulatorHostError("the emulator host is not started")
        return self._served[i]

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> EmulatorHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> EmulatorHost:
        """Create the credentials, serve both emulators, wait for both, then write the config."""
        if self._served:
            raise EmulatorHostError("the emulator host is already started")
        if not self.folder.exists():
            self.folder.mkdir(parents=True, mode=0o700)
        for port in self._ports:
            if port is not None:
                _check_port_free(port)
        # A config left from an earlier run must not be mistaken for this one before it is ready.
        self.config_path.unlink(missing_ok=True)
        tls = make_tls_files(self.folder)
        secrets_ = self._make_secrets()
        self.secrets = secrets_
        self._graph = self._graph_factory(self._graph_data, self._graph_settings(secrets_))
        if self.target == "scim":
            self._so = self._scim_factory(self._scim_data, self._scim_settings(secrets_))
        else:
            self._so = self._so_factory(self._so_data, self._so_settings(secrets_))
        try:
            for name, emulator, port in (
                ("Graph", self._graph, self._ports[0]),
                ("SCIM" if self.target == "scim" else "SuperOffice", self._so, self._ports[1]),
            ):
                served = serve_in_thread(
                    emulator.app, certfile=str(tls.server_cert), keyfile=str(tls.server_key), host=LOOPBACK, port=port
                )
                self._served.append(served)
                _await_started(served, name)
            for served in self._served:
                wait_accepting(served.host, served.port)
            self._write_config()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (the files stay, for inspection). Safe to call twice."""
        served, self._served = self._served, []
        for s in served:
            s.stop()

    # -- credentials, settings, config --------------------------------------------------------------

    def _make_secrets(self) -> HostSecrets:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        entra_secret: str | None = None
        thumbprint: str | None = None
        cert_pem: bytes | None = None
        if self._entra_auth == "secret":
            entra_secret = secrets.token_urlsafe(32)
            write_private(self.folder / "entra-client-secret", entra_secret)
        else:
            cert_key, cert_pem, thumbprint = self_signed_certificate("scimflow emulated Entra app")
            write_private(self.folder / "entra-app-key.pem", cert_key)
            write_private(self.folder / "entra-app-cert.pem", cert_pem)
        app_token = secrets.token_urlsafe(24)
        system_user_token = "scimflow-" + secrets.token_hex(16)
        scim_token: str | None = None
        if self.target == "scim":
            scim_token = secrets.token_urlsafe(32)
            write_private(self.folder / "scim-token", scim_token)
        else:
            write_private(self.folder / "superoffice-client-secret", app_token)
            write_private(self.folder / "superoffice-system-user-token", system_user_token)
            write_private(self.folder / "superoffice-app.pem", private_pem)
        return HostSecrets(
            entra_client_id=str(uuid.uuid4()),
            entra_client_secret=entra_secret,
            entra_thumbprint=thumbprint,
            entra_certificate_pem=cert_pem,
            superoffice_client_id=secrets.token_hex(16),
            app_token=app_token,
            system_user_token=system_user_token,
            app_private_key_pem=private_pem,
            app_public_key_pem=public_pem,
            scim_token=scim_token,
        )

    def _graph_settings(self, s: HostSecrets) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "tenant_id": self._tenant_id,
            "client_id": s.entra_client_id,
            "client_secret": s.entra_client_secret,
        }
        if s.entra_thumbprint is not None and s.entra_certificate_pem is not None:
            settings["certificate_thumbprints"] = {s.entra_thumbprint: s.entra_certificate_pem}
        return {**settings, **self._graph_overrides}

    def _so_settings(self, s: HostSecrets) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "context_identifier": self._ctx,
            "client_id": s.superoffice_client_id,
            "app_token": s.app_token,
            "system_user_token": s.system_user_token,
            "app_public_key_pem": s.app_public_key_pem,
        }
        return {**settings, **self._so_overrides}

    def _scim_settings(self, s: HostSecrets) -> dict[str, Any]:
        return {"dialect": self._scim_dialect, "token": s.scim_token, **self._scim_overrides}

    def _target_config(self) -> dict[str, Any]:
        """The config's target part: a ``superoffice:`` block, or ``target: scim`` and a ``scim:`` block."""
        assert self.secrets is not None
        if self.target == "scim":
            return {
                "target": "scim",
                "scim": {
                    "base_url": self.scim_base_url,
                    "token": "file:scim-token",
                    "dialect": self._scim_dialect,
                    "group_prefix": self._group_prefix,
                    "write_concurrency": self._write_concurrency,
                },
            }
        so_origin = self.superoffice_origin
        return {
            "superoffice": {
                "webapi_url": f"{so_origin}/{self._ctx}",
                "login_url": f"{so_origin}/login",
                "context_identifier": self._ctx,
                "client_id": self.secrets.superoffice_client_id,
                "client_secret": "file:superoffice-client-secret",
                "system_user_token": "file:superoffice-system-user-token",
                "private_key": "file:superoffice-app.pem",
            },
        }

    def config_data(self) -> dict[str, Any]:
        """The config the host writes, as a mapping (paths relative to the config's folder)."""
        assert self.secrets is not None
        entra: dict[str, Any] = {
            "tenant_id": self._tenant_id,
            "client_id": self.secrets.entra_client_id,
        }
        if self.secrets.entra_thumbprint is None:
            entra["client_secret"] = "file:entra-client-secret"  # noqa: S105 - a reference, not a secret
        else:
            entra["certificate"] = {
                "private_key": "file:entra-app-key.pem",
                "public_certificate": "file:entra-app-cert.pem",
                "thumbprint": self.secrets.entra_thumbprint,
            }
        entra["authority_host"] = self.graph_origin
        entra["graph_url"] = self.graph_origin
        return {
            "entra": entra,
            **self._target_config(),
            "ca_bundle": self.ca_bundle.name,
            "rules": str(self._rules),
            "state_url": self._state_url,
            "guardrails": self._guardrails,
        }

    def _write_config(self) -> None:
        header = (
            "# Written by `scimflow emulate`: both emulators were accepting connections when this was written.\n"
            "# Secrets are the owner-only files beside this one.\n"
        )
        text = header + yaml.safe_dump(self.config_data(), sort_keys=False, allow_unicode=True)
        tmp = self.config_path.with_name(f".{self.config_path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.config_path)  # atomic: a watcher sees no file or the whole file
