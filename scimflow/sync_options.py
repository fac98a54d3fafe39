"""The options of one sync run, defined once (standard library only, so ``scimflow --help`` stays fast).

Each :class:`SyncFlag` holds one option: the :class:`~scimflow.sync_params.SyncParams` field it fills, its
command-line flag, type, default, range and description. ``SyncParams`` (the flow's parameter model, the
form Prefect shows) takes its defaults, ranges and descriptions from here and checks at import that its
fields and types match; ``scimflow sync``'s options (scimflow/cli.py) and the parser of
``python -m flows.run`` (:func:`add_sync_arguments`) are derived from :data:`SYNC_FLAGS` too.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Final

__all__ = ["MODES", "SYNC_FLAGS", "SyncFlag", "add_sync_arguments", "flag_of"]

#: The run modes, in the order the help lists them.
MODES: Final[tuple[str, ...]] = ("preview", "approve", "auto")


@dataclass(frozen=True)
class SyncFlag:
    """One sync option.

    ``kind`` is ``bool`` (a flag without a value), ``int`` or ``str``. ``negated``: the flag turns a field
    whose default is true off (``--no-wait-for-held``). ``help`` replaces ``description`` where the command
    line reads differently from the form. ``is_path``: made absolute before it is handed to the flow.
    """

    field: str
    flag: str
    kind: type
    default: str | int | bool | None
    description: str
    short: str | None = None
    negated: bool = False
    help: str | None = None
    is_path: bool = False
    choices: tuple[str, ...] | None = None
    ge: int | None = None
    le: int | None = None

    @property
    def dest(self) -> str:
        """The attribute name on a parsed namespace (the field's name)."""
        return self.field

    @property
    def text(self) -> str:
        """The command-line help: ``help`` or the description."""
        return self.help or self.description


#: One entry per :class:`~scimflow.sync_params.SyncParams` field, in the order ``--help`` lists them.
SYNC_FLAGS: Final[tuple[SyncFlag, ...]] = (
    SyncFlag(
        "config", "--config", str, "scimflow.yaml", "Path of the scimflow.yaml to use",
        short="-c", help="The scimflow.yaml to use", is_path=True,
    ),
    SyncFlag("rules", "--rules", str, None, "A rule set overriding the config's `rules`", short="-r", is_path=True),
    SyncFlag(
        "mode", "--mode", str, "approve",
        "preview: plan only; approve: pause for the form; auto: apply within the guardrails", choices=MODES,
    ),
    SyncFlag("user", "--user", str, None, "Sync only this user (UPN)"),
    SyncFlag(
        "approval_timeout", "--timeout", int, 3600,
        "Seconds to wait for the approval form; a timeout rejects", ge=1,
    ),
    SyncFlag(
        "cli_approved", "--approve", bool, False, "Approved on the command line (`scimflow sync --approve`)",
        help="Approve on the command line (recorded as such)",
    ),
    SyncFlag(
        "wait_for_held", "--no-wait-for-held", bool, True,
        "auto mode: pause for classes over their guardrail budget (else end with them held)",
        negated=True,
        help="auto mode: end with the classes over their guardrail budget held, instead of pausing for them",
    ),
    SyncFlag("full", "--full", bool, False, "Read all Entra users even when a delta link is stored"),
    SyncFlag(
        "poll_interval", "--poll-interval", int, 2, "Seconds between checks for the approval while paused",
        ge=1, le=60,
    ),
)  # fmt: skip


def flag_of(field: str) -> SyncFlag:
    """The entry of ``field``. Raises ``KeyError`` for a field that is not a sync option."""
    for f in SYNC_FLAGS:
        if f.field == field:
            return f
    raise KeyError(field)


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per :data:`SYNC_FLAGS` entry (``dest`` = the field name, default = the field's)."""
    for f in SYNC_FLAGS:
        names = [f.flag, *([f.short] if f.short else [])]
        if f.kind is bool:
            action = "store_false" if f.negated else "store_true"
            parser.add_argument(*names, dest=f.dest, action=action, default=f.default, help=f.text)
        else:
            parser.add_argument(*names, dest=f.dest, type=f.kind, choices=f.choices, default=f.default, help=f.text)
