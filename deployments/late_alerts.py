"""The late-nightly alert: a proactive Prefect automation per tenant deployment.

Each tenant folder may hold an ``alerts.yaml`` next to its ``scimflow.yaml``::

    tenant: contoso                   # named in the alert
    deployment: sync-users/nightly    # <flow>/<deployment> as deployed (prefect.yaml)
    late_after: "06:00"               # a time of day, or a duration such as "4h" or "90m"

A run of that deployment that has not reached a final state (Completed, the named exit-3 states, Failed,
Crashed, Cancelled) ``late_after`` after it became due raises the alert, naming the tenant and linking the
run and the deployment. "Became due" is the run's first ``Pending`` (a worker took it), ``Running`` or
``Late`` (it was due and nobody took it) event, so a worker that is down raises it too. A time of day is read against the
deployment's daily cron schedule as deployed (``"06:00"`` for ``0 2 * * *`` is a window of 4 hours); a
duration is counted from the run's start. :func:`deployments.notifications.ensure_automations` creates the
automations with the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect.automations import Automation, EventTrigger, SendNotification
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from scimflow.apply import PARTIAL_STATE_NAMES
from scimflow.yamlsafe import UnsafeYamlError, safe_load

__all__ = [
    "AFTER_EVENTS",
    "FINAL_EVENTS",
    "MIN_WINDOW_SECONDS",
    "LateAlert",
    "LateAlertError",
    "late_automation",
    "late_window",
    "load_late_alerts",
]

#: A run became due: a worker took it (Pending), it started (Running: a runner that skips Pending), or it
#: waited past its start with nobody taking it (Late). The first of them opens the run's window; later ones
#: (a resume's Running) leave it as it is.
AFTER_EVENTS = frozenset({"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Late"})
#: Every state a sync run ends in (Prefect's final states and the named exit-3 ones).
FINAL_EVENTS = frozenset(
    {f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled", "Crashed", *PARTIAL_STATE_NAMES)}
)
#: Prefect refuses a proactive trigger with a shorter window.
MIN_WINDOW_SECONDS = 10
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_RUN_LINK = "{{ flow_run|ui_url or 'flow run id ' ~ flow_run.id }}"
_DEPLOYMENT_LINK = "{{ deployment|ui_url or 'deployment id ' ~ deployment.id }}"


class LateAlertError(ValueError):
    """A settings file, or the deployment it names, cannot make a late alert (the message names the file)."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    deployment: str = "sync-users/nightly"
    late_after: str

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if not _TENANT.match(v):
            msg = "a tenant key: letters, digits, '.', '_', '@', '-' (at most 64)"
            raise ValueError(msg)
        return v

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, v: str) -> str:
        if v.count("/") != 1 or not all(v.split("/")):
            msg = "<flow name>/<deployment name>, e.g. sync-users/nightly"
            raise ValueError(msg)
        return v

    @field_validator("late_after", mode="before")
    @classmethod
    def _late_after(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, str):
            msg = (
                f'a quoted time of day ("06:00") or duration ("4h", "90m"), not {v!r} (YAML reads an unquoted '
                "6:00 as the number 360)"
            )
            raise ValueError(msg)
        text = str(v).strip()
        if not (_CLOCK.match(text) or (text and _DURATION.match(text))):
            msg = f'{text!r} is neither a time of day ("06:00") nor a duration ("4h", "90m", "4h30m", "45s")'
            raise ValueError(msg)
        if not _CLOCK.match(text) and _seconds(text) < MIN_WINDOW_SECONDS:
            msg = f"{text!r} is shorter than {MIN_WINDOW_SECONDS} s, the shortest window Prefect's proactive triggers take"
            raise ValueError(msg)
        return text


@dataclass(frozen=True)
class LateAlert:
    """One tenant deployment's late alert, and the settings file it came from."""

    tenant: str
    deployment: str
    late_after: str
    source: str

    @property
    def name(self) -> str:
        """The automation's name (one per tenant deployment; replaced when created again)."""
        return f"scimflow: {self.tenant}: {self.deployment} late"


def _seconds(duration: str) -> int:
    m = _DURATION.match(duration)
    assert m is not None
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    return h * 3600 + mi * 60 + s


def load_late_alerts(paths: list[Path]) -> list[LateAlert]:
    """Read the ``alerts.yaml`` files; a bad one raises :class:`LateAlertError` naming the file and field."""
    alerts: list[LateAlert] = []
    for path in paths:
        try:
            data = safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnsafeYamlError) as exc:
            msg = f"{path}: {exc}"
            raise LateAlertError(msg) from None
        except yaml.YAMLError as exc:  # it names its own line
            msg = f"{path}: not YAML: {exc}"
            raise LateAlertError(msg) from None
        try:
            s = _Settings.model_validate(data if data is not None else {})
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors())
            msg = f"{path}: {fields}"
            raise LateAlertError(msg) from None
        alerts.append(LateAlert(s.tenant, s.deployment, s.late_after, str(path)))
    return alerts


def _daily_start(cron: str) -> tuple[int, int] | None:
    """The (hour, minute) of a cron line that fires once a day at a fixed time, else ``None``."""
    fields = cron.split()
    if len(fields) != 5 or not (fields[0].isdigit() and fields[1].isdigit()):
        return None
    return int(fields[1]), int(fields[0])


def late_window(alert: LateAlert, crons: list[str]) -> timedelta:
    """How long after a run became due it counts as late.

    A duration is taken as it is. A time of day needs the deployment's daily cron schedule(s) (``crons``,
    all starting at the same time): the window runs from that start to the next such time of day. On the
    nights clocks change it is off by that hour.
    """
    if not _CLOCK.match(alert.late_after):
        return timedelta(seconds=_seconds(alert.late_after))
    starts = {_daily_start(c) for c in crons}
    if not crons or None in starts or len(starts) != 1:
        msg = (
            f"{alert.source}: late_after {alert.late_after!r} is a time of day, which needs {alert.deployment} to "
            f"have one daily cron schedule with a fixed hour and minute (it has: {crons or 'none'}); "
            'give a duration instead, e.g. late_after: "4h"'
        )
        raise LateAlertError(msg)
    ((hour, minute),) = starts  # type: ignore[misc]
    h, m = (int(x) for x in alert.late_after.split(":"))
    minutes = (h * 60 + m - (hour * 60 + minute)) % (24 * 60)
    if minutes == 0:
        msg = f"{alert.source}: late_after {alert.late_after!r} is the schedule's own start time"
        raise LateAlertError(msg)
    return timedelta(minutes=minutes)


def _when(alert: LateAlert, within: timedelta) -> str:
    if _CLOCK.match(alert.late_after):
        return f"{alert.late_after} (schedule's time zone)"
    return f"{alert.late_after} after it was due"


def late_automation(
    alert: LateAlert, deployment_id: object, within: timedelta, block_document_id: object
) -> Automation:
    """The proactive automation: after a run of the deployment became due, expect a final state ``within``."""
    when = _when(alert, within)
    subject = f"scimflow: {alert.tenant}: nightly run {{{{ flow_run.name }}}} not finished by {alert.late_after}"
    body = (
        f"Tenant {alert.tenant}: the run "
        "{{ flow_run.name }} of "
        f"{alert.deployment} has not finished by {when}: it was "
        "{{ flow_run.state.name }} at {{ event.occurred }} and has reached no final state since (still planning or "
        "applying, waiting for approval, or its worker is down).\n"
        "Open the run: " + _RUN_LINK + "\nThe deployment: " + _DEPLOYMENT_LINK
    )
    return Automation(
        name=alert.name,
        description=f"runs of {alert.deployment} for tenant {alert.tenant} not finished by {when} ({alert.source})",
        trigger=EventTrigger(
            after=set(AFTER_EVENTS),
            expect=set(FINAL_EVENTS),
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "deployment",
                "prefect.resource.id": f"prefect.deployment.{deployment_id}",
            },
            for_each={"prefect.resource.id"},
            posture="Proactive",
            threshold=1,
            within=within,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=subject, body=body)],
    )
