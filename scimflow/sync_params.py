"""The parameters of one sync run as a pydantic model (the form Prefect shows for a run; no Prefect here).

Defaults, ranges and descriptions come from :data:`scimflow.sync_options.SYNC_FLAGS`, the one definition of
the sync options; the model only adds the types, and checks at import that its fields are exactly those
options, with the same types. :func:`params_from_namespace` builds it from parsed arguments and
:func:`sync_argv` writes the command line ``scimflow sync`` hands to ``python -m flows.run``.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from scimflow.sync_options import MODES, SYNC_FLAGS, SyncFlag, add_sync_arguments, flag_of

__all__ = [
    "MODES",
    "SYNC_FLAGS",
    "Mode",
    "SyncFlag",
    "SyncParams",
    "add_sync_arguments",
    "params_from_namespace",
    "sync_argv",
]

Mode = Literal["preview", "approve", "auto"]


def _field(name: str) -> Any:
    """The pydantic ``Field`` of option ``name``: its default, range and description."""
    f = flag_of(name)
    return Field(f.default, description=f.description, ge=f.ge, le=f.le)


class SyncParams(BaseModel):
    """Parameters of one sync run (a form in the Prefect UI)."""

    config: str = _field("config")
    rules: str | None = _field("rules")
    mode: Mode = _field("mode")
    user: str | None = _field("user")
    approval_timeout: int = _field("approval_timeout")
    cli_approved: bool = _field("cli_approved")
    wait_for_held: bool = _field("wait_for_held")
    full: bool = _field("full")
    poll_interval: int = _field("poll_interval")


def _check_options_match_model() -> None:
    fields = SyncParams.model_fields
    if [f.field for f in SYNC_FLAGS] != list(fields):
        msg = f"SYNC_FLAGS {[f.field for f in SYNC_FLAGS]} must list SyncParams' fields {list(fields)} in order"
        raise AssertionError(msg)
    if typing.get_args(Mode) != MODES:
        msg = f"Mode {typing.get_args(Mode)} differs from MODES {MODES}"
        raise AssertionError(msg)
    for f in SYNC_FLAGS:
        annotation = fields[f.field].annotation
        if typing.get_origin(annotation) is Literal:
            kinds: set[object] = {str}
        else:  # X or X | None
            kinds = {a for a in typing.get_args(annotation) if a is not type(None)} or {annotation}
        if kinds != {f.kind}:
            msg = f"SyncParams.{f.field} is {annotation}, but its option says {f.kind.__name__}"
            raise AssertionError(msg)


_check_options_match_model()


def params_from_namespace(ns: argparse.Namespace | dict[str, Any], *, resolve: bool = True) -> SyncParams:
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
