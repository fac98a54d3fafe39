"""``scimflow emulate``: serve both emulators on loopback over HTTPS until stopped, and write a config.

The config, the CA and the secret files go beside ``--write-config``; the config is written only once
both emulators accept connections (see :class:`scimflow.emulators.host.EmulatorHost`). With
``--target scim`` the second emulator is the SCIM one (empty, or ``--scim-data``) and the config says
``target: scim``.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from scimflow.emulators.host import EmulatorHost, EmulatorHostError

__all__ = ["FixtureError", "load_fixture", "run_emulate"]

_REQUIRED_LISTS = {
    "graph": ("users", "groups"),
    "superoffice": ("users", "roles", "usergroups", "userplans", "contacts"),
    "scim": ("users", "groups"),
}


class FixtureError(ValueError):
    """A fixture file is missing or not in the fixture format; the message names the file."""


def load_fixture(path: Path, kind: str) -> dict[str, Any]:
    """Read a ``G.json`` (``kind="graph"``), ``S.json`` (``kind="superoffice"``) or SCIM (``kind="scim"``) fixture.

    A SCIM fixture is the SCIM emulator's snapshot format, ``{"users": [...], "groups": [...]}``.

    Raises:
        FixtureError: the file cannot be read, is not JSON (with line and column), or lacks a list.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read the {kind} fixture: {exc.strerror}"
        raise FixtureError(msg) from None
    except UnicodeDecodeError:
        msg = f"{path}: the {kind} fixture is not UTF-8 text"
        raise FixtureError(msg) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise FixtureError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: the {kind} fixture must be a JSON object with {', '.join(_REQUIRED_LISTS[kind])}"
        raise FixtureError(msg)
    for key in _REQUIRED_LISTS[kind]:
        value = data.get(key, [] if key != "users" or kind == "scim" else None)
        if not isinstance(value, list):
            what = "missing" if key not in data else f"a {type(value).__name__}"
            msg = f"{path}: '{key}' must be a list in the {kind} fixture ({what})"
            raise FixtureError(msg)
        bad = next((i for i, item in enumerate(value) if not isinstance(item, dict)), None)
        if bad is not None:
            msg = f"{path}: {key}[{bad}] must be an object"
            raise FixtureError(msg)
    return data


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_emulate(
    graph_data: Path | None,
    superoffice_data: Path | None,
    write_config: Path,
    users: int | None,
    seed: int,
    graph_port: int | None,
    superoffice_port: int | None,
    rules: Path | None,
    *,
    target: str = "superoffice",
    scim_data: Path | None = None,
    scim_dialect: str = "entra",
    scim_port: int | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve the emulators until SIGINT/SIGTERM (or ``stop`` is set); return the exit code.

    ``--users N`` generates a tenant (with ``seed``) instead of reading the fixture files. With
    ``target="scim"`` the SCIM emulator replaces SuperOffice: it starts empty (an initial push fills it) or
    from ``scim_data``, under the ``scim_dialect``'s policy. Exit 0 after a clean stop, 1 when an option or a
    fixture is bad or an emulator cannot start (the message names the option, file or port).
    """
    scim = target == "scim"
    if target not in ("superoffice", "scim"):
        _err(f"--target must be superoffice or scim, not {target!r}")
        return 1
    if scim_dialect not in ("entra", "rfc"):
        _err(f"--scim-dialect must be entra or rfc, not {scim_dialect!r}")
        return 1
    if scim and superoffice_data is not None:
        _err("--superoffice-data has no use with --target scim (give --scim-data for the SCIM side)")
        return 1
    if not scim and scim_data is not None:
        _err("--scim-data needs --target scim")
        return 1
    pair = "--graph-data" if scim else "--graph-data and --superoffice-data"
    scim_fixture: dict[str, Any] = {"users": [], "groups": []}
    try:
        if users is not None:
            if graph_data is not None or superoffice_data is not None:
                _err(f"give either --users N or {pair}, not both")
                return 1
            if users < 0:
                _err(f"--users must be 0 or more, not {users}")
                return 1
            from scimflow.emulators.generate import generate_tenant

            graph, so = generate_tenant(users, seed)
        else:
            if graph_data is None or (superoffice_data is None and not scim):
                _err(f"give {pair}, or --users N")
                return 1
            graph = load_fixture(graph_data, "graph")
            so = load_fixture(superoffice_data, "superoffice") if superoffice_data is not None else {}
        if scim_data is not None:
            scim_fixture = load_fixture(scim_data, "scim")
    except FixtureError as exc:
        _err(f"error: {exc}")
        return 1
    if rules is not None and not rules.exists():
        _err(f"error: {rules}: no such rules file")
        return 1

    stop = stop or threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        config_path = write_config.expanduser().resolve()
        host = EmulatorHost(
            graph, so, config_path.parent, config_name=config_path.name, rules=rules,
            graph_port=graph_port, superoffice_port=superoffice_port,
            target="scim" if scim else "superoffice", scim_data=scim_fixture,
            scim_dialect="rfc" if scim_dialect == "rfc" else "entra", scim_port=scim_port,
        )  # fmt: skip
        try:
            host.start()
        except (EmulatorHostError, OSError) as exc:
            _err(f"error: {exc}")
            return 1
        except ValueError as exc:  # a SCIM fixture record scim2-models refuses (the message names it)
            _err(f"error: {exc}")
            return 1
        gc.collect()  # the tenants loaded live as long as this process: the collector's full passes skip them
        gc.freeze()
        try:
            _out(f"Graph emulator:       {host.graph_origin}  ({len(graph.get('users', []))} users)")
            if scim:
                _out(f"SCIM emulator:        {host.scim_base_url}  ({len(scim_fixture.get('users') or [])} users,")
                _out(f"                      {scim_dialect} policy, bearer token in {host.folder / 'scim-token'})")
            else:
                _out(f"SuperOffice emulator: {host.superoffice_origin}  ({len(so.get('users', []))} users)")
            _out(f"config:               {host.config_path}")
            _out(f"CA bundle:            {host.ca_bundle}")
            _out(f"snapshots:            GET {host.graph_origin}/_emulator/snapshot")
            _out(f"                      GET {host.target_origin}/_emulator/snapshot")
            _out(f"  e.g. curl --cacert {host.ca_bundle} {host.target_origin}/_emulator/snapshot")
            _out("serving until Ctrl-C (SIGINT) or SIGTERM")
            while not stop.wait(0.5):
                pass
        finally:
            host.stop()
        _out("emulators stopped")
        return 0
    finally:
        _restore_signal_handlers(previous)


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    """Make SIGINT/SIGTERM set ``stop`` (only possible in the main thread; elsewhere ``stop`` is the way)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
