"""``scimflow sync``: the whole flow as a Prefect flow run, in a child process (``python -m flows.run``).

Against ``PREFECT_API_URL`` when it is set; otherwise against a local Prefect server started for the run
(``prefect server start`` on a free loopback port, SQLite under ``.scimflow/prefect`` next to the config,
scheduler and analytics off) and stopped afterwards. This module never imports Prefect: the server and
the flow are separate processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from scimflow.files import UnsafePathError, private_folder, write_private
from scimflow.netutil import free_port
from scimflow.sync_params import Mode, SyncParams, sync_argv

__all__ = ["LocalPrefectServer", "flow_argv", "flow_command", "prefect_env", "run_sync", "state_folder"]

#: Seconds to wait for a fresh Prefect server (30 s is typical on 2 cores with a fresh database).
SERVER_START_TIMEOUT = 120.0


def prefect_env(home: Path | None = None, api_url: str | None = None) -> dict[str, str]:
    """The environment for Prefect processes: no telemetry, a private home, the API to use."""
    env = dict(os.environ)
    env["DO_NOT_TRACK"] = "1"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The flow run's heartbeat (Prefect's default 180 s): deployments/crash_detection.py marks a run whose
    # heartbeats stopped for three of them Crashed.
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


def state_folder(config: Path) -> Path:
    """The state folder next to a config file (``.scimflow``)."""
    return Path(config).resolve().parent / ".scimflow"


#: The file in the Prefect home holding the local server's auth string (0600), for logging in to the UI.
AUTH_FILE = "api-auth-string"


def _private_home(home: Path) -> None:
    """Make the Prefect home 0700 and everything already in it owner-only (the database holds previews)."""
    private_folder(home)  # refused when a symlink, not ours, or group/world-writable
    for root, dirs, files in os.walk(home):  # os.walk does not descend into symlinked folders
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(0o700 if name in dirs else 0o600)


@dataclass
class LocalPrefectServer:
    """A ``prefect server start`` child process on a loopback port (its own process group).

    Started by scimflow it answers only requests carrying its random auth string (HTTP basic,
    ``PREFECT_SERVER_API_AUTH_STRING``; :meth:`client_env` hands it to the flow process only), allows
    cross-origin requests from its own origin only, and keeps its home 0700 and its files 0600.
    """

    home: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    auth_string: str | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_file(self) -> Path:
        """The 0600 file holding the auth string (paste it into the UI's login page)."""
        return self.home / AUTH_FILE

    def client_env(self) -> dict[str, str]:
        """The environment for this server's clients (the flow process): its API URL and auth string."""
        env = prefect_env(self.home, self.api_url)
        env.pop("PREFECT_API_AUTH_STRING", None)
        if self.auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        return env

    @classmethod
    def start(
        cls, home: Path, *, ui: bool = True, port: int | None = None, services: bool = True, auth: bool = True
    ) -> LocalPrefectServer:
        """Start the server (returns at once; call :meth:`wait_healthy`).

        ``auth=False`` (the test suite's shared server only) leaves the API open to anyone on the machine.
        """
        try:
            _private_home(home)
        except UnsafePathError as exc:
            msg = f"the Prefect home: {exc}"
            raise RuntimeError(msg) from None
        port = port or free_port()
        auth_string = f"scimflow:{secrets.token_urlsafe(32)}" if auth else None
        cmd = [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", "127.0.0.1", "--port", str(port), "--analytics-off", "--no-scheduler",
        ]  # fmt: skip
        cmd.append("--ui" if ui else "--no-ui")
        if not services:
            cmd.append("--no-services")
        env = prefect_env(home)
        env.pop("PREFECT_API_URL", None)
        # The UI asks the server where its API is; unset, that is port 4200 whatever --port says.
        env["PREFECT_SERVER_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
        # A web page open in a local browser must not drive the API: only the server's own UI may.
        env["PREFECT_SERVER_CORS_ALLOWED_ORIGINS"] = f"http://127.0.0.1:{port}"
        env.pop("PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", None)
        env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
        env.pop("PREFECT_API_AUTH_STRING", None)
        if auth_string is not None:
            env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
            env["PREFECT_API_AUTH_STRING"] = auth_string  # for any of its own services that call its API
            write_private(home / AUTH_FILE, auth_string + "\n")
        log_path = home / "server.log"
        log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab")
        process = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, umask=0o077
        )  # umask 077: the database and everything else the server creates is owner-only
        return cls(home=home, port=port, process=process, log_path=log_path, auth_string=auth_string, _log=log)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:  # noqa: S310 - loopback http
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    def wait_healthy(self, timeout: float = SERVER_START_TIMEOUT) -> float:
        """Poll ``/api/health`` until it answers; return the seconds waited. Raises ``RuntimeError``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                msg = f"the Prefect server exited with {self.process.returncode}:\n{tail}"
                raise RuntimeError(msg)
            if self.healthy():
                return time.monotonic() - t0
            time.sleep(0.5)
        self.stop()
        msg = f"the Prefect server did not answer within {timeout:.0f} s (log: {self.log_path})"
        raise RuntimeError(msg)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def prefect_api(home: Path, console: Console, *, ui: bool) -> Iterator[dict[str, str]]:
    """The environment for the flow process: ``PREFECT_API_URL`` when set (the user's Prefect profile and
    home are left alone), else a local server (home ``home``) for the duration of the block."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield prefect_env(None, url)
        return
    server = LocalPrefectServer.start(home, ui=ui)
    try:
        with console.status(f"Starting a local Prefect server (home {home}) …"):
            waited = server.wait_healthy()
        console.print(f"Prefect server ready in {waited:.0f} s at {server.ui_url}")
        if ui:
            console.print(f"The UI asks for a password: paste the auth string from {server.auth_file}")
        yield server.client_env()
    finally:
        with console.status("Stopping the local Prefect server …"):
            server.stop()


def flow_argv(params: SyncParams, *, result_json: Path | None = None, extra: list[str] | None = None) -> list[str]:
    """The ``python -m flows.run`` command line that runs the flow with ``params``."""
    cmd = [sys.executable, "-m", "flows.run", *sync_argv(params)]
    if result_json is not None:
        cmd += ["--result-json", str(result_json)]
    return cmd + list(extra or [])


def flow_command(
    config: Path,
    *,
    rules: Path | None = None,
    approve: bool = False,
    user: str | None = None,
    mode: Mode | None = None,
    timeout: int = 3600,
    result_json: Path | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """:func:`flow_argv` for the options ``scimflow demo`` uses (``None`` = the default)."""
    params = SyncParams(
        config=str(config),
        rules=None if rules is None else str(rules),
        cli_approved=approve,
        user=user,
        mode=mode or "approve",
        approval_timeout=timeout,
    )
    return flow_argv(params, result_json=result_json, extra=extra)


def read_result(path: Path) -> dict[str, Any] | None:
    """The flow's result JSON (written by ``flows.run --result-json``), if it was written."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def run_sync(params: SyncParams) -> int:
    """Run the flow once; return the contract's exit code (0 all applied, 3 some not applied, 1 error)."""
    console = Console(highlight=False, soft_wrap=True)
    from scimflow.config import ConfigError, load_config

    config = Path(params.config)
    try:
        load_config(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    home = state_folder(config) / "prefect"
    try:
        with prefect_api(home, console, ui=not params.cli_approved) as env:
            if not params.cli_approved and params.mode == "approve":
                console.print("The run will pause for approval; approve it in the Prefect UI (URL in the log below).")
            cmd = flow_argv(params)
            return subprocess.call(cmd, env=env, umask=0o077)  # results it stores in the home: owner-only
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
