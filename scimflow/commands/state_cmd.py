"""``scimflow state show`` / ``state reset-baseline``: the state store's Entra baseline, links and runs.

``show`` never prints a delta link: a link carries Graph's ``$deltatoken``; it says whether each link is
present, its length and the first digits of its SHA-256 (enough to tell that it changed).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from scimflow.config import ConfigError, load_config
from scimflow.state import LinkInfo, StateError, StateStore, baseline_info, store_overview

__all__ = ["reset_baseline", "show_state"]


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "—" if value is None else str(value)


def _link(info: LinkInfo) -> str:
    if not info.present:
        return "absent (the next run reads in full)"
    return f"present ({info.length} characters, sha256 {info.digest}…)"


def show_state(config: Path, *, as_json: bool) -> int:
    """Print the tenant's baseline, the delta links (never their values), counts and the last run; 0 or 1."""
    err = Console(stderr=True, highlight=False)
    try:
        cfg = load_config(config)
        with StateStore(cfg.state_url) as store:
            base = baseline_info(store, cfg.tenant_key)
            overview = store_overview(store)
            url = store.url
    except (ConfigError, StateError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    if as_json:
        doc = {
            "state_url": url,
            "tenant": cfg.tenant_key,
            "baseline": base.to_dict() if base else None,
            **overview.to_dict(),
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state store", url)
    table.add_row("tenant", cfg.tenant_key)
    if base is None:
        table.add_row("Entra baseline", "none (the next run reads Entra in full)")
    else:
        table.add_row("Entra baseline", f"{base.user_count} users, saved {_when(base.updated_at)}")
        table.add_row("users delta link", _link(base.users_link))
        table.add_row("groups delta link", _link(base.groups_link))
    table.add_row("links", str(overview.links))
    table.add_row("runs", str(overview.runs))
    table.add_row("journal rows", str(overview.journal_rows))
    table.add_row("approvals", str(overview.approvals))
    last = overview.last_run
    if last is None:
        table.add_row("last run", "none")
    else:
        hash_ = (last.get("plan_hash") or "")[:12] or "—"
        table.add_row(
            "last run",
            f"{last['id']} {last['mode']} {last['status']}, started {_when(last['started_at'])}, "
            f"finished {_when(last['finished_at'])}, plan {hash_}",
        )
    Console(highlight=False).print(table)
    return 0


def reset_baseline(config: Path, *, yes: bool) -> int:
    """Forget the tenant's Entra baseline and delta links so the next run reads Entra in full; 0, or 1."""
    err = Console(stderr=True, highlight=False)
    try:
        cfg = load_config(config)
        with StateStore(cfg.state_url) as store:
            base = baseline_info(store, cfg.tenant_key)
            if base is None:
                sys.stdout.write(f"tenant {cfg.tenant_key}: no baseline stored; the next run reads Entra in full\n")
                return 0
            if not yes:
                if not sys.stdin.isatty():
                    err.print("[red]error:[/red] not a terminal to confirm on: give --yes to reset the baseline")
                    return 1
                import typer

                question = (
                    f"Forget the Entra baseline of {cfg.tenant_key} ({base.user_count} users, saved "
                    f"{_when(base.updated_at)}) and its delta links?"
                )
                if not typer.confirm(question, default=False):
                    sys.stdout.write("nothing changed\n")
                    return 1
            store.clear_baseline(cfg.tenant_key)
    except (ConfigError, StateError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    sys.stdout.write(f"tenant {cfg.tenant_key}: baseline reset; the next run reads Entra in full\n")
    return 0
