"""The options of one sync run, defined once.

:class:`SyncParams` is the flow's parameter model (the form Prefect shows for a run); :data:`SYNC_FLAGS`
names the command-line flag of each of its fields. Everything else is derived from these two:
``scimflow sync``'s options (scimflow/cli.py), the parser of ``python -m flows.run``
(:func:`add_sync_arguments`, :func:`params_from_namespace`) and the command line ``scimflow sync`` hands
to that child process (:func:`sync_argv`). A field without a flag, or a flag without a field, fails at
import.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field

__all__ = [
    "MODES",
    "SYNC_FLAGS",
    "SyncFlag",
    "SyncParams",
    "add_sync_arguments",
    "params_from_namespace",
    "sync_argv",
]

Mode = Literal["preview", "approve", "auto"]
#: The run modes, in the order the help lists them.
MODES: Final[tuple[str, ...]] = typing.get_args(Mode)


class SyncParams(BaseModel):
    """Parameters of one sync run (a form in the Prefect UI)."""

    config: str = Field("scimflow.yaml", description="Path of the scimflow.yaml to use")
    rules: str | None = Field(None, description="A rule set overriding the config's `rules`")
    mode: Mode = Field(
        "approve", description="preview: plan only; approve: pause for the form; auto: apply within the guardrails"
    )
    user: str | None = Field(None, description="Sync only this user (UPN)")
    approval_timeout: int = Field(3600, ge=1, description="Seconds to wait for the approval form; a timeout rejects")
    cli_approved: bool = Field(False, description="Approved on the command line (`scimflow sync --approve`)")
    wait_for_held: bool = Field(
        True, description="auto mode: pause for classes over their guardrail budget (else end with them held)"
    )
    full: bool = Field(False, description="Read all Entra users even when a delta link is stored")
    poll_interval: int = Field(2, ge=1, le=60, description="Seconds between checks for the approval while paused")


@dataclass(frozen=True)
class SyncFlag:
    """How one :class:`SyncParams` field appears on a command line.

    ``negated``: a flag that turns a field whose default is true off (``--no-wait-for-held``). ``help``
    replaces the field's description where the command line reads differently from the form.
    """

    field: str
    flag: str
    short: str | None = None
    negated: bool = False
    help: str | None = None
    is_path: bool = False

    @property
    def dest(self) -> str:
        """The attribute name on a parsed namespace (the field's name)."""
        return self.field

    @property
    def kind(self) -> type:
        """``bool`` (a flag without a value), ``int`` or ``str``."""
        annotation = SyncParams.model_fields[self.field].annotation
        if annotation is bool:
            return bool
        if annotation is int:
            return int
        return str

    @property
    def default(self) -> object:
        return SyncParams.model_fields[self.field].default

    @property
    def choices(self) -> tuple[str, ...] | None:
        return MODES if self.field == "mode" else None

    @property
    def text(self) -> str:
        """The help text: ``help`` or the field's description."""
        return self.help or SyncParams.model_fields[self.field].description or ""


#: One flag per :class:`SyncParams` field, in the order ``--help`` lists them.
SYNC_FLAGS: Final[tuple[SyncFlag, ...]] = (
    SyncFlag("config", "--config", "-c", help="The scimflow.yaml to use", is_path=True),
    SyncFlag("rules", "--rules", "-r", is_path=True),
    SyncFlag("mode", "--mode"),
    SyncFlag("user", "--user"),
    SyncFlag("cli_approved", "--approve", help="Approve on the command line (recorded as such)"),
    SyncFlag("approval_timeout", "--timeout"),
    SyncFlag(
        "wait_for_held",
        "--no-wait-for-held",
        negated=True,
        help="auto mode: end with the classes over their guardrail budget held, instead of pausing for them",
    ),
    SyncFlag("full", "--full"),
    SyncFlag("poll_interval", "--poll-interval"),
)

if {f.field for f in SYNC_FLAGS} != set(SyncParams.model_fields) or len(SYNC_FLAGS) != len(SyncParams.model_fields):
    _msg = "SYNC_FLAGS must name every SyncParams field exactly once"
    raise AssertionError(_msg)


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per :data:`SYNC_FLAGS` entry (``dest`` = the field name, default = the field's)."""
    for f in SYNC_FLAGS:
        names = [f.flag, *([f.short] if f.short else [])]
        if f.kind is bool:
            action = "store_false" if f.negated else "store_true"
            parser.add_argument(*names, dest=f.dest, action=action, default=f.default, help=f.text)
        else:
            parser.add_argument(*names, dest=f.dest, type=f.kind, choices=f.choices, default=f.default, help=f.text)


def params_from_namespace(ns: argparse.Namespace | dict[str, object], *, resolve: bool = True) -> SyncParams:
    """:class:`SyncParams` from parsed arguments (pydantic checks the ranges: ``ValidationError``).

    ``resolve``: make ``config`` and ``rules`` absolute (the flow may run in another folder).
    """
    values = dict(vars(ns) if isinstance(ns, argparse.Namespace) else ns)
    picked = {f.field: values[f.dest] for f in SYNC_FLAGS if f.dest in values}
    if resolve:
        for f in SYNC_FLAGS:
            if f.is_path and picked.get(f.field) is not None:
                picked[f.field] = str(Path(str(picked[f.field])).resolve())
    return SyncParams.model_validate(picked)


def sync_argv(params: SyncParams) -> list[str]:
    """The command-line arguments that make :func:`params_from_namespace` give back ``params``.

    Values equal to the default are left out, except ``--config`` (always given, absolute).
    """
    out: list[str] = []
    for f in SYNC_FLAGS:
        value = getattr(params, f.field)
        if f.field != "config" and value == f.default:
            continue
        if f.kind is bool:
            out.append(f.flag)  # differs from the default: the flag (negated ones turn a true default off)
        elif value is not None:
            text = str(Path(str(value)).resolve()) if f.is_path else str(value)
            out += [f.flag, text]
    return out
