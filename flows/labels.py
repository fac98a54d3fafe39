"""What a sync run is called and tagged in Prefect: tenant, mode and time in the name, the tenant and the
target in the tags (``tenant:<key>``, ``target:<superoffice|scim>``), so the runs list and the notifications
say whose run it is and automations can match one tenant.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from flows.prefect_client import api_client
from scimflow.config import Config, load_config
from scimflow.errors import ScimflowError

__all__ = ["name_for", "run_name", "run_tags", "tag_run"]


def name_for(tenant_key: str, mode: str, when: datetime) -> str:
    """``<tenant>-<mode>-<UTC date and time>``, e.g. ``contoso-approve-2026-12-03T0100Z``."""
    return f"{tenant_key}-{mode}-{when.astimezone(UTC):%Y-%m-%dT%H%MZ}"


def run_tags(config: Config) -> list[str]:
    """The tags naming the run's tenant and target."""
    return [f"tenant:{config.tenant_key}", f"target:{config.target}"]


def _param(params: Any, name: str, default: str) -> str:
    value = params.get(name) if isinstance(params, Mapping) else getattr(params, name, None)
    return str(value) if value else default


def run_name() -> str:
    """The ``flow_run_name`` of ``sync-users`` (Prefect calls it as the run starts, parameters known).

    A config that does not load leaves its file's name in place of the tenant; the run itself then fails
    with the config's error.
    """
    params = flow_run.parameters.get("params") or {}
    config = _param(params, "config", "scimflow.yaml")
    try:
        tenant = load_config(config).tenant_key
    except ScimflowError:
        tenant = Path(config).stem
    when = flow_run.scheduled_start_time or datetime.now(UTC)
    return name_for(tenant, _param(params, "mode", "approve"), when)


def tag_run(config: Config) -> None:
    """Add :func:`run_tags` to the current flow run's tags (a deployment's own tags stay), and record the
    process running it as ``host:pid`` (``infrastructure_pid``: how the next run tells it was killed)."""
    run_id = flow_run.id
    if run_id is None:
        return
    with api_client() as client:
        current = client.read_flow_run(run_id).tags or []
        wanted = [*current, *(t for t in run_tags(config) if t not in current)]
        client.update_flow_run(run_id, tags=wanted, infrastructure_pid=f"{socket.gethostname()}:{os.getpid()}")
