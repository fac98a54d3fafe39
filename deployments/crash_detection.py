"""Mark sync runs Crashed when their heartbeats stop (a killed worker, a lost container or machine).

The flow engine sends a ``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds (``scimflow sync`` sets 60; Prefect's default is 180) while a run is alive, paused runs included.
This automation, Prefect's documented one for "zombie" runs, waits after each heartbeat for the next one
or for the run's final state; when neither comes within three heartbeats it sets the run Crashed, which
the ``scimflow: sync failed`` notification then reports. Run once per Prefect server (idempotent)::

    python -m deployments.crash_detection --heartbeat 60

Without it a killed run stays Running in Prefect until the tenant's next run starts: that one marks it
Crashed when its process, on the same host, is gone (``tasks/plan.py``), and marks it ``crashed`` in the
state store's runs table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

from prefect.automations import Automation, EventTrigger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState

from deployments.notifications import FLOW_NAME
from scimflow.apply import PARTIAL_STATE_NAMES

__all__ = ["NAME", "crash_detection", "ensure_crash_detection"]

NAME = "scimflow: mark sync runs without heartbeats crashed"
#: Every state a sync run ends in (Prefect's final states and the named exit-3 ones).
_FINAL_EVENTS = {f"prefect.flow-run.{name}" for name in {"Completed", "Failed", "Cancelled", "Crashed"}} | {
    f"prefect.flow-run.{name}" for name in PARTIAL_STATE_NAMES
}


def crash_detection(heartbeat_seconds: int, *, flow_name: str = FLOW_NAME) -> Automation:
    """The automation: no heartbeat or final state within three heartbeats of the last one: Crashed."""
    return Automation(
        name=NAME,
        description=f"runs of {flow_name!r} whose heartbeats stopped are marked Crashed",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *_FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            for_each={"prefect.resource.id"},
            posture="Proactive",
            threshold=1,
            within=timedelta(seconds=3 * heartbeat_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {3 * heartbeat_seconds} s: the run's process is gone",
            )
        ],
    )


async def ensure_crash_detection(heartbeat_seconds: int, *, flow_name: str = FLOW_NAME) -> Automation:
    """Create (or replace) the automation on the current Prefect server."""
    async with get_client() as client:
        for existing in await client.read_automations():
            if existing.name == NAME:
                await client.delete_automation(existing.id)
    return await crash_detection(heartbeat_seconds, flow_name=flow_name).acreate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heartbeat", type=int, default=60, help="the flows' heartbeat frequency in seconds")
    parser.add_argument("--flow", default=FLOW_NAME, help="flow name to watch (default: sync-users)")
    args = parser.parse_args(argv)
    made = asyncio.run(ensure_crash_detection(args.heartbeat, flow_name=args.flow))
    sys.stdout.write(f"automation ready: {made.name} ({made.id})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
