"""``scimflow demo``: a generated tenant on both emulators, the whole flow on a local Prefect, then a re-plan.

Steps: generate a tenant (``--users``, ``--seed``); serve the Graph and SuperOffice emulators over HTTPS
with a config beside them (:class:`~scimflow.emulators.host.EmulatorHost`); start a local Prefect server
(its home under the work folder, kept between demos so the second start is quicker); run the
``sync-users`` flow in a child process, approved on the command line (or, with ``--interactive``, in the
Prefect UI); print the summary and where the artifacts and plan files are; re-plan to show convergence
(0 pending changes).

The demo's guardrails are wide on purpose (a generated tenant has many first-time changes), so the
command-line approval applies everything and the re-plan converges.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from scimflow.commands.sync_cmd import LocalPrefectServer, flow_command, read_result

__all__ = ["DEMO_GUARDRAILS", "run_demo"]

DEMO_GUARDRAILS = {"max_retire": "50%", "max_changes": 1_000_000, "min_source_users": 1, "max_source_drop": "50%"}


def _fresh_state(workdir: Path) -> None:
    """Forget the previous demo's state (a new emulated tenant), keeping the Prefect home."""
    state = workdir / ".scimflow"
    for name in ("state.db", "state.db-wal", "state.db-shm", "out", "replan"):
        p = state / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run_demo(
    interactive: bool, users: int, seed: int, workdir: Path, *, target: str = "superoffice", scim_dialect: str = "entra"
) -> int:
    """Run the demo; return the flow's exit code (0 when everything applied), or 1 on error.

    ``target="scim"`` serves a SCIM 2.0 emulator (scim2-server, empty, under ``scim_dialect``'s policy)
    instead of SuperOffice, and prints the Identity Manager rules to enter for the computed groups.
    """
    console = Console(highlight=False, soft_wrap=True)
    from scimflow.emulators.generate import generate_tenant
    from scimflow.emulators.host import EmulatorHost

    workdir = Path(workdir).resolve()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the emulators' secret files
    _fresh_state(workdir)
    t0 = time.monotonic()
    home = workdir / ".scimflow" / "prefect"
    try:
        server = LocalPrefectServer.start(home, ui=interactive)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    try:
        with console.status(f"Generating a tenant of {users} users (seed {seed}) and starting the emulators …"):
            graph, so = generate_tenant(users, seed)
            if target == "scim":
                host = EmulatorHost(
                    graph,
                    {},
                    workdir,
                    guardrails=DEMO_GUARDRAILS,
                    target="scim",
                    scim_dialect="rfc" if scim_dialect == "rfc" else "entra",
                ).start()
            else:
                host = EmulatorHost(graph, so, workdir, guardrails=DEMO_GUARDRAILS).start()
        try:
            if target == "scim":
                console.print(
                    f"Emulators: Graph {host.graph_origin}, SCIM {host.scim_base_url} ({scim_dialect} dialect); "
                    f"config {host.config_path}"
                )
                _print_img_rules(host.config_path, console)
            else:
                console.print(
                    f"Emulators: Graph {host.graph_origin}, SuperOffice {host.superoffice_origin}; "
                    f"config {host.config_path}"
                )
            with console.status("Starting a local Prefect server (about 30 s the first time) …"):
                waited = server.wait_healthy()
            console.print(f"Prefect server ready in {waited:.0f} s: {server.ui_url}")
            result_path = workdir / ".scimflow" / "last-run.json"
            result_path.unlink(missing_ok=True)
            env = server.client_env()  # the API URL and the server's auth string, for the flow process only
            if interactive:
                console.print(
                    Panel(
                        f"Open {server.ui_url} and log in with the auth string in {server.auth_file}; find the "
                        "paused run of flow 'sync-users', read the preview artifacts and submit the approval form "
                        "(set approve). The run URL is in the log below.",
                        title="approve in the Prefect UI",
                    )
                )
                cmd = flow_command(host.config_path, result_json=result_path, timeout=24 * 3600)
            else:
                cmd = flow_command(host.config_path, approve=True, result_json=result_path)
            rc = subprocess.call(cmd, env=env, umask=0o077)  # results it stores in the home: owner-only
            result = read_result(result_path)
            if result is None:
                console.print(f"[red]the flow did not finish (exit {rc})[/red]")
                return 1
            rc_replan = _replan(host.config_path, workdir, console)
            console.print(f"Demo finished in {time.monotonic() - t0:.0f} s.")
            if interactive:
                console.print(f"The Prefect UI stays up at {server.ui_url}; press Ctrl-C to stop.")
                _wait_forever()
            return rc if rc_replan == 0 else 1
        finally:
            from scimflow.connectors.graph import clear_app_cache

            clear_app_cache()  # close the re-plan's pooled connections, so the emulators stop at once
            host.stop()
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()


def _print_img_rules(config: Path, console: Console) -> None:
    """The Identity Manager rules a SCIM target's admin enters once (one per computed group)."""
    from scimflow.commands.scim_cmd import print_img_rules
    from scimflow.config import load_config

    cfg = load_config(config)
    console.print("Identity Manager rules for the computed groups (enter once; `scimflow scim img-rules`):")
    print_img_rules(cfg.rules, config=config, console=console)


def _replan(config: Path, workdir: Path, console: Console) -> int:
    """Plan again (no Prefect) and print the pending changes (0 once the sync converged)."""
    from scimflow import pipeline
    from scimflow.config import load_config

    cfg = load_config(config)
    out = workdir / ".scimflow" / "replan"
    outcome, _, _ = pipeline.run_plan_stages(cfg, out=out)
    s = outcome.summary
    pending = outcome.change_rows
    colour = "green" if pending == 0 else "yellow"
    console.print(
        f"Re-plan: [{colour}]{pending} pending changes[/{colour}] "
        f"(unchanged {s.get('unchanged', 0)}, quarantine {s.get('quarantine', 0)}, conflict {s.get('conflict', 0)}, "
        f"unmanaged {s.get('unmanaged', 0)}, out of scope {s.get('out_of_scope', 0)}); plan files {out}"
    )
    return 0


def _wait_forever() -> None:
    while True:
        time.sleep(3600)
