"""`scimflow emulate` and `scimflow links`: real files, real sockets, TLS verification on."""

from __future__ import annotations

import json
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scimflow.commands.emulate_cmd import run_emulate
from scimflow.commands.links_cmd import export_links, import_links
from scimflow.config import load_config
from scimflow.connectors.http import build_client
from scimflow.emulators.host import EmulatorHost, EmulatorHostError

FIXTURES = Path(__file__).parent / "fixtures"
SECRET_FILES = (
    "entra-client-secret",
    "superoffice-client-secret",
    "superoffice-system-user-token",
    "superoffice-app.pem",
    "emulator-server.key",
)


class StandIn:
    """A stand-in emulator (host plumbing tests only): serves its data at /_emulator/snapshot."""

    def __init__(self, data: dict[str, Any], settings: dict[str, Any]) -> None:
        self.data = data
        self.settings = settings

        async def snapshot(_: Request) -> JSONResponse:
            return JSONResponse(self.data)

        self.app = Starlette(routes=[Route("/_emulator/snapshot", snapshot)])

    def snapshot(self) -> dict[str, Any]:
        return self.data


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.02)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].rsplit(":", 1)
            if int(hexport, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(addr)
    return found


@pytest.fixture
def emulate(tmp_path: Path):
    """`scimflow emulate` on the worked example, running in a thread until the test ends."""
    cfg_path = tmp_path / "emu" / "scimflow.yaml"
    stop = threading.Event()
    result: dict[str, int] = {}

    def run() -> None:
        result["rc"] = run_emulate(
            FIXTURES / "graph.json", FIXTURES / "superoffice.json", cfg_path, None, 0, None, None,
            FIXTURES / "rules.yaml", stop=stop,
        )  # fmt: skip

    th = threading.Thread(target=run, daemon=True)
    th.start()
    _wait_for(cfg_path)
    yield cfg_path
    stop.set()
    th.join(20)
    assert result.get("rc") == 0


def test_emulate_worked_example(emulate: Path, graph_fixture: dict, superoffice_fixture: dict) -> None:
    """The written config validates, its secrets resolve, and both emulators serve the fixtures over verified TLS."""
    cfg = load_config(emulate)
    folder = emulate.parent
    assert cfg.ca_bundle == folder / "emulator-ca.pem"
    assert cfg.rules == (FIXTURES / "rules.yaml").resolve()
    assert cfg.state_url == f"sqlite:///{folder / '.scimflow' / 'state.db'}"
    assert cfg.entra.client_secret is not None
    for ref in (cfg.entra.client_secret, cfg.superoffice.client_secret, cfg.superoffice.system_user_token,
                cfg.superoffice.private_key):  # fmt: skip
        assert ref.kind == "file"
        assert ref.path is not None
        assert ref.path.parent == folder
        assert ref.reveal()
    assert cfg.superoffice.private_key.reveal().startswith("-----BEGIN PRIVATE KEY-----")
    for name in SECRET_FILES:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert cfg.superoffice.login_url.endswith("/login")
    assert cfg.superoffice.webapi_url.endswith("/" + cfg.superoffice.context_identifier)
    so_origin = cfg.superoffice.login_url.removesuffix("/login")
    assert cfg.entra.graph_url != so_origin
    with build_client(ca_bundle=cfg.ca_bundle) as client:
        assert client.get(f"{cfg.entra.graph_url}/_emulator/snapshot").json() == graph_fixture
        assert client.get(f"{so_origin}/_emulator/snapshot").json() == superoffice_fixture
        token = client.post(
            f"{cfg.entra.authority_host}/{cfg.entra.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": cfg.entra.client_id,
                "client_secret": cfg.entra.client_secret.reveal(),
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        assert token.status_code == 200, token.text
        assert token.json()["access_token"]


def test_tls_without_the_ca_is_refused(emulate: Path) -> None:
    """A client that does not trust the generated CA cannot talk to the emulators (verification is on)."""
    import httpx

    cfg = load_config(emulate)
    with build_client() as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"{cfg.entra.graph_url}/_emulator/snapshot")


def test_emulators_bind_loopback_only(emulate: Path) -> None:
    """Both emulators listen on 127.0.0.1 only, never on a wildcard or external address."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/net/tcp")
    cfg = load_config(emulate)
    for origin in (cfg.entra.graph_url, cfg.superoffice.login_url.removesuffix("/login")):
        host, port = origin.removeprefix("https://").rsplit(":", 1)
        assert host == "127.0.0.1"
        assert _listening_addresses(int(port)) == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_links_import_then_export_round_trips(
    emulate: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`links import` then `links export` returns the same links, sorted."""
    items = [{"entra_id": "6f1c0002-2b3a-4c5d-9e8f-0a1b2c3d0002", "associate_id": 12},
             {"entra_id": "6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001", "associate_id": 11}]  # fmt: skip
    f = tmp_path / "links.json"
    f.write_text(json.dumps(items))
    assert import_links(emulate, f) == 0
    capsys.readouterr()
    assert export_links(emulate) == 0
    assert json.loads(capsys.readouterr().out) == sorted(items, key=lambda i: str(i["entra_id"]))
    db = emulate.parent / ".scimflow" / "state.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"entra_id": "a", "associate_id": 1},\n {"entra_id": "b"}]', "item 1: associate_id"),
        ('[{"entra_id": "a", \n', "not valid JSON at line 2"),
        ('{"entra_id": "a"}', "expected a JSON list"),
    ],
    ids=["bad-item", "bad-json", "not-a-list"],
)
def test_links_import_errors_name_file_and_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    """A bad links file exits 1 naming the file and the item, and writes nothing."""
    cfg = _plain_config(tmp_path)
    f = tmp_path / "links.json"
    f.write_text(content)
    assert import_links(cfg, f) == 1
    err = capsys.readouterr().err
    assert str(f) in err
    assert expected in err
    assert export_links(cfg) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_links_import_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A links file that does not exist exits 1 naming it."""
    assert import_links(_plain_config(tmp_path), tmp_path / "nope.json") == 1
    assert "nope.json" in capsys.readouterr().err


def _plain_config(folder: Path) -> Path:
    """A config with file: secrets that never need to resolve (links commands only open the state store)."""
    cfg = {
        "entra": {"tenant_id": "t", "client_id": "c", "client_secret": "file:x"},
        "superoffice": {"webapi_url": "https://so/Cust1", "login_url": "https://so/login", "context_identifier": "Cust1",
                        "client_secret": "file:y", "system_user_token": "file:z", "private_key": "file:k"},
        "state_url": "sqlite:///state/state.db",
    }  # fmt: skip
    p = folder / "scimflow.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        (None, "cannot read the graph fixture"),
        ('{"users": [', "not valid JSON at line 1"),
        ("[]", "must be a JSON object"),
        ('{"groups": []}', "'users' must be a list in the graph fixture (missing)"),
        ('{"users": [1], "groups": []}', "users[0] must be an object"),
    ],
    ids=["missing", "bad-json", "not-object", "no-users", "bad-user"],
)
def test_emulate_fixture_errors_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], graph: str | None, expected: str
) -> None:
    """A missing or malformed fixture exits 1 with a message naming the file and the problem; no config is written."""
    g = tmp_path / "G.json"
    if graph is not None:
        g.write_text(graph)
    cfg = tmp_path / "out" / "scimflow.yaml"
    rc = run_emulate(g, FIXTURES / "superoffice.json", cfg, None, 0, None, None, None, stop=threading.Event())
    assert rc == 1
    err = capsys.readouterr().err
    assert str(g) in err
    assert expected in err
    assert not cfg.exists()


def test_emulate_generated_tenant(tmp_path: Path) -> None:
    """`--users N` serves a generated tenant of N users."""
    cfg_path = tmp_path / "scimflow.yaml"
    stop = threading.Event()
    th = threading.Thread(
        target=run_emulate, args=(None, None, cfg_path, 25, 3, None, None, None), kwargs={"stop": stop}, daemon=True
    )
    th.start()
    try:
        _wait_for(cfg_path)
        cfg = load_config(cfg_path)
        with build_client(ca_bundle=cfg.ca_bundle) as client:
            snap = client.get(f"{cfg.entra.graph_url}/_emulator/snapshot").json()
        assert len(snap["users"]) == 25
    finally:
        stop.set()
        th.join(20)


def test_config_is_written_only_once_both_accept(tmp_path: Path, graph_fixture: dict) -> None:
    """The moment a (new) config file appears, both origins it names accept connections."""
    folder = tmp_path / "emu"
    folder.mkdir()
    cfg_path = folder / "scimflow.yaml"
    stale = "stale: true\n"
    cfg_path.write_text(stale)  # an old config must not count as ready
    seen: dict[str, Any] = {}

    def watch() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:  # the host removes the stale file before writing the new one: it may be missing for a moment
                text = cfg_path.read_text()
            except FileNotFoundError:
                text = stale
            if text != stale:
                break
            assert time.monotonic() < deadline
            time.sleep(0.001)
        data = yaml.safe_load(text)
        seen["ok"] = []
        for origin in (data["entra"]["graph_url"], data["superoffice"]["login_url"].removesuffix("/login")):
            host, port = origin.removeprefix("https://").rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=2):
                seen["ok"].append(origin)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with EmulatorHost(graph_fixture, {"users": []}, folder, graph_factory=StandIn, superoffice_factory=StandIn) as host:
        watcher.join(20)
        assert seen["ok"] == [host.graph_origin, host.superoffice_origin]


def test_port_in_use_fails_clearly_and_writes_no_config(tmp_path: Path, graph_fixture: dict) -> None:
    """A fixed port that is taken fails naming the port, stops nothing but its own, and writes no config."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        host = EmulatorHost(graph_fixture, {}, tmp_path, superoffice_port=port,
                            graph_factory=StandIn, superoffice_factory=StandIn)  # fmt: skip
        with pytest.raises(EmulatorHostError, match=f"port {port}"):
            host.start()
    assert not host.config_path.exists()


def test_host_passes_settings_and_certificate_credential(tmp_path: Path, graph_fixture: dict) -> None:
    """Settings overrides reach the emulators, and a certificate credential is written and accepted by thumbprint."""
    with EmulatorHost(
        graph_fixture, {}, tmp_path, graph_settings={"latency": 0.5}, superoffice_settings={"page_size_max": 10},
        entra_auth="certificate", graph_factory=StandIn, superoffice_factory=StandIn,
    ) as host:  # fmt: skip
        g, so = host.graph.settings, host.superoffice.settings
        assert g["latency"] == 0.5
        assert so["page_size_max"] == 10
        assert so["app_token"] == (tmp_path / "superoffice-client-secret").read_text()
        assert so["app_public_key_pem"].startswith(b"-----BEGIN PUBLIC KEY-----")
        cfg = load_config(host.config_path)
        assert cfg.entra.certificate is not None
        assert cfg.entra.client_secret is None
        assert set(g["certificate_thumbprints"]) == {cfg.entra.certificate.thumbprint}
        assert stat.S_IMODE((tmp_path / "entra-app-key.pem").stat().st_mode) == 0o600
    with pytest.raises(EmulatorHostError, match="not started"):
        _ = host.graph_origin
