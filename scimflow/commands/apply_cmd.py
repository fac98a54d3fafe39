"""``scimflow apply PLAN_DIR``: apply a saved plan whose hash the operator confirms.

The plan is the folder ``scimflow plan`` (or a sync run) wrote: ``plan.jsonl``, ``summary.json`` and
``links.jsonl`` (the matched pairs to link). Before anything is written:

- the folder must be the operator's and not writable by others (:func:`~scimflow.files.check_private_folder`);
- ``plan.jsonl`` must still have the hash ``summary.json`` recorded (else :class:`~scimflow.apply.PlanChangedError`);
- the hash must be approved: ``--approve HASH`` (the full hash or its first 12+ hex characters), or on a
  terminal the operator types the first 12 characters after seeing the diff; without either, nothing;
- a plan whose source was judged unhealthy is refused, as a sync run refuses it.

Then, when ``PREFECT_API_URL`` is set and ``--direct`` is not given, the ``apply-saved-plan`` flow
(``flows/apply_plan.py``) runs in a child process with the confirmed hash (:func:`flow_apply_argv`), the
same stages as chunk tasks; this module never imports Prefect. A ``PREFECT_API_URL`` where no server
answers (:func:`prefect_answers`) is an error (exit 1, nothing applied: the operator who set it expects a
flow run), not a silent fallback; ``--direct`` applies in this process anyway. Without ``PREFECT_API_URL``,
or with ``--direct``, directly: one run is recorded (mode ``apply``), the approval journalled as
``cli:<OS user>`` with the holds, and :func:`scimflow.apply.apply_plan` applies it (drift re-read per row,
journal, read-back, links). Either way, action classes over their guardrail budget are held, as with
``scimflow sync --approve``.

Exit codes as ``scimflow sync``: 0 every change applied (or nothing to do), 3 some not applied (held,
drifted), 1 an error, a write that failed, or no valid approval.
"""

from __future__ import annotations

import getpass
import io
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from rich.console import Console
from rich.markup import escape

from scimflow.errors import ScimflowError

if TYPE_CHECKING:
    from scimflow.apply import Approval

__all__ = [
    "LINKS_FILE",
    "MIN_PREFIX",
    "ApprovalError",
    "SavedPlan",
    "check_approval",
    "cli_approval",
    "cli_approver",
    "flow_apply_argv",
    "load_saved_plan",
    "prefect_answers",
    "print_report",
    "read_links",
    "run_apply",
    "unreachable_message",
]

#: The fewest hex characters of the plan hash that approve it (``--approve`` or the prompt).
MIN_PREFIX = 12
_HEX = re.compile(r"^[0-9a-f]{12,64}$")
_ERRORS: tuple[type[Exception], ...] = (ScimflowError, OSError, ValueError)


class ApprovalError(ScimflowError, ValueError):
    """The approval given does not approve this plan: nothing is applied."""


@dataclass(frozen=True)
class SavedPlan:
    """A plan folder checked for applying: its hash (summary.json's, equal to plan.jsonl's sha256) and its
    summary. The matched pairs to link are read once the hash is approved (:func:`read_links`)."""

    folder: Path
    plan_hash: str
    summary: dict[str, Any]

    @property
    def verdict(self) -> str:
        return str(self.summary.get("guardrails", {}).get("verdict", "ok"))

    @property
    def over_budget(self) -> list[str]:
        return [str(a) for a in self.summary.get("guardrails", {}).get("held", []) or []]


#: The plan's matched pairs beside its files (written by :func:`scimflow.plan.write_plan_files`).
LINKS_FILE = "links.jsonl"


def read_links(folder: Path, plan_hash: str) -> pl.DataFrame | None:
    """The matched pairs of ``folder/links.jsonl`` (``entra_id``, ``associate_id``, both strings).

    ``None`` when the file is missing (a plan written before links were saved: nothing extra is linked).
    A file written for another plan, or a pair that is not two ids, is refused naming the file.
    """
    path = Path(folder) / LINKS_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    head, _, body = data.partition(b"\n")
    try:
        bound = json.loads(head)
    except json.JSONDecodeError as exc:
        msg = f"{path} line 1: not JSON ({exc.msg})"
        raise ScimflowError(msg) from None
    found = bound.get("plan_hash") if isinstance(bound, dict) else None
    if found != plan_hash:
        msg = f"{path} was written for another plan ({str(found)[:12]}…, this one is {plan_hash[:12]}…)"
        raise ScimflowError(msg)
    schema = {"entra_id": pl.String, "associate_id": pl.String}
    if not body.strip():
        return pl.DataFrame(schema=schema)
    try:
        pairs = pl.read_ndjson(io.BytesIO(body))
        ok = set(pairs.columns) == set(schema) and pairs.schema["entra_id"] == pl.String
        ok = ok and pairs.schema["associate_id"] in (pl.Int64, pl.String)
        pairs = pairs.select(pl.col("entra_id"), pl.col("associate_id").cast(pl.String)) if ok else pairs
    except (pl.exceptions.PolarsError, ValueError) as exc:
        msg = f"{path}: not one {{entra_id, associate_id}} object per line after the first ({exc})"
        raise ScimflowError(msg) from None
    if not ok or pairs.null_count().sum_horizontal().item() or (pairs.get_column("entra_id") == "").any():
        msg = f"{path}: every line after the first must be {{'entra_id': text, 'associate_id': an id}}"
        raise ScimflowError(msg)
    return pairs


def load_saved_plan(folder: Path) -> SavedPlan:
    """Check a plan folder (ours, plan.jsonl unchanged since summary.json was written) and read it."""
    from scimflow.apply import PlanChangedError, plan_file_hash
    from scimflow.files import check_private_folder

    folder = check_private_folder(Path(folder))
    path = folder / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{folder} holds no summary.json: not a plan folder (give the folder `scimflow plan` printed)"
        raise ScimflowError(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"{path}: not JSON ({exc.msg}, line {exc.lineno})"
        raise ScimflowError(msg) from None
    plan_hash = summary.get("plan_hash") if isinstance(summary, dict) else None
    if not isinstance(plan_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", plan_hash):
        msg = f"{path}: plan_hash is not a sha256 hex digest"
        raise ScimflowError(msg)
    actual = plan_file_hash(folder)
    if actual != plan_hash:
        msg = (
            f"{folder}/plan.jsonl changed since it was planned (its hash is {actual[:12]}…, "
            f"summary.json's {plan_hash[:12]}…): nothing applied"
        )
        raise PlanChangedError(msg)
    return SavedPlan(folder=folder, plan_hash=plan_hash, summary=summary)


def check_approval(given: str, plan_hash: str) -> None:
    """Accept ``given`` only when it is ``plan_hash`` or a prefix of it of at least :data:`MIN_PREFIX` hex
    characters; else :class:`ApprovalError`."""
    text = given.strip().lower()
    if not _HEX.match(text):
        msg = f"--approve: give the plan hash (64 hex characters) or its first {MIN_PREFIX} or more"
        raise ApprovalError(msg)
    if not plan_hash.startswith(text):
        msg = f"--approve {text[:12]}… is not this plan's hash ({plan_hash[:12]}…): nothing applied"
        raise ApprovalError(msg)


def cli_approver() -> str:
    """Who approved on this command line, as journalled: ``cli:`` and the OS user."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry
        user = f"uid {os.getuid()}"
    return f"cli:{user}"


def _check_holds(hold_actions: list[str]) -> None:
    from scimflow.vocab import CHANGE_ACTIONS

    unknown = sorted({a for a in hold_actions if a.strip().lower() not in CHANGE_ACTIONS})
    if unknown:
        msg = f"--hold-actions: {', '.join(unknown)} is not an action class (one of {', '.join(CHANGE_ACTIONS)})"
        raise ScimflowError(msg)


def _check_hold_users(saved: SavedPlan, hold_users: list[str]) -> None:
    """Refuse a ``--hold-users`` that is no change row's key: a misspelt hold must not apply the user."""
    from scimflow.diff import read_plan_rows
    from scimflow.vocab import CHANGE_ACTIONS

    if not hold_users:
        return
    keys = {
        str(r.get("key", "")).strip().lower() for r in read_plan_rows(saved.folder) if r.get("action") in CHANGE_ACTIONS
    }
    unknown = sorted({u for u in hold_users if u.strip().lower() not in keys})
    if unknown:
        msg = f"--hold-users: {', '.join(unknown)} is not a user of this plan's changes (give the key the diff shows)"
        raise ScimflowError(msg)


def _prompted(saved: SavedPlan, out: Console, err: Console, limit: int | None) -> bool:
    """Show the diff and the hash; True when the operator types the hash's first :data:`MIN_PREFIX` chars."""
    from scimflow.commands.plan_live import TERMINAL_LIMIT, print_diff

    print_diff(saved.folder, out, TERMINAL_LIMIT if limit is None else limit)
    err.print(f"\nplan {saved.plan_hash}")
    err.print(
        f"guardrails: {saved.verdict}" + (f" (held: {', '.join(saved.over_budget)})" if saved.over_budget else "")
    )
    try:
        answer = err.input(
            f"Type the first {MIN_PREFIX} characters of the plan hash to apply it (anything else cancels): "
        )
    except EOFError:
        return False
    return answer.strip().lower() == saved.plan_hash[:MIN_PREFIX]


def cli_approval(hold_actions: list[str], hold_users: list[str], comment: str) -> Approval:
    """The :class:`~scimflow.apply.Approval` a command-line approval records (holds lower-cased)."""
    from scimflow.apply import Approval

    return Approval(
        approve=True,
        by="cli",
        comment=comment or "approved on the command line (scimflow apply)",
        hold_actions=tuple(a.strip().lower() for a in hold_actions),
        hold_users=tuple(u.strip().lower() for u in hold_users),
    )


def flow_apply_argv(
    config: Path, saved: SavedPlan, approver: str, comment: str, hold_actions: list[str], hold_users: list[str]
) -> list[str]:
    """The ``python -m flows.apply_plan`` command line applying ``saved`` (its hash already confirmed)."""
    cmd = [
        sys.executable, "-m", "flows.apply_plan", "--config", str(Path(config).resolve()),
        "--plan-dir", str(saved.folder), "--plan-hash", saved.plan_hash, "--approver", approver,
        "--comment", comment,
    ]  # fmt: skip
    for action in hold_actions:
        cmd += ["--hold-actions", action]
    for user in hold_users:
        cmd += ["--hold-users", user]
    return cmd


def prefect_answers(url: str, timeout: float = 3.0) -> bool:
    """True when something answers HTTP at ``url``/health (any status: an auth error still means a server)."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout):  # noqa: S310 - http(s) only
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _shown_url(url: str) -> str:
    """``url`` without a user or password and without a query (an API URL may carry credentials)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<not a URL>"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def unreachable_message(url: str) -> str:
    """Why ``scimflow apply`` stops when ``PREFECT_API_URL`` is set but nothing answers there (nothing applied)."""
    shown = _shown_url(url)
    return (
        f"PREFECT_API_URL is {shown} but no Prefect server answers there: nothing applied. Start the server "
        "or correct PREFECT_API_URL to apply as a flow run, or give --direct to apply in this process without one"
    )


def _run_flow(
    config: Path, saved: SavedPlan, hold_actions: list[str], hold_users: list[str], comment: str, err: Console
) -> int:
    """Run the ``apply-saved-plan`` flow against ``PREFECT_API_URL`` in a child process; its exit code."""
    import subprocess

    from scimflow.commands.sync_cmd import prefect_env

    approver = cli_approver()
    err.print(
        f"applying plan {saved.plan_hash[:12]}… approved by {escape(approver)} as a Prefect flow run "
        f"(apply-saved-plan at {escape(_shown_url(os.environ.get('PREFECT_API_URL', '')))})"
    )
    cmd = flow_apply_argv(config, saved, approver, comment, hold_actions, hold_users)
    try:
        return subprocess.call(cmd, env=prefect_env(None, os.environ.get("PREFECT_API_URL")), umask=0o077)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def print_report(report: Any, out: Console, err: Console | None = None, *, over_budget: Sequence[str] = ()) -> None:
    """Print an :class:`~scimflow.apply.ApplyReport`: the counts, then each row not applied or not verified;
    on ``err``, the classes of ``over_budget`` (the plan's guardrail verdict) that were held."""
    from scimflow.diff import safe_text

    out.print(
        f"applied {report.applied}, already done {report.already_done}, held {report.held}, "
        f"drifted {report.drifted}, failed {report.failed}; verified {report.verified} of {report.planned}"
    )
    for r in report.rows:
        if r.outcome in ("held", "drifted", "failed") or r.verified is False:
            detail = f": {r.detail}" if r.detail else ""
            out.print(escape(safe_text(f"  {r.outcome} {r.action} {r.key}{detail}")))
    held = sorted(set(over_budget) & {r.action for r in report.rows if r.outcome == "held"})
    if err is not None and held:
        err.print(f"held over their guardrail budget: {', '.join(held)}")


def run_apply(
    plan_dir: Path,
    *,
    config: Path,
    approve: str | None,
    hold_actions: list[str],
    hold_users: list[str],
    comment: str = "",
    limit: int | None = None,
    direct: bool = False,
) -> int:
    """Check, approve and apply the plan in ``plan_dir``; 0 all applied, 3 some not applied, 1 error.

    As a flow run (``apply-saved-plan``) when ``PREFECT_API_URL`` is set, unless ``direct``; exit 1 when it
    is set and no server answers there (:func:`unreachable_message`).
    """
    from scimflow import pipeline
    from scimflow.config import load_config

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_holds(hold_actions)
        cfg = load_config(config)
        saved = load_saved_plan(plan_dir)
        _check_hold_users(saved, hold_users)
        if saved.verdict == "source_unhealthy":
            msg = f"{saved.folder}: the source was judged unhealthy when this plan was made; it may not be applied"
            raise ScimflowError(msg)
        url = "" if direct else os.environ.get("PREFECT_API_URL", "").strip()
        if url and not prefect_answers(url):  # before the prompt: the operator expects a flow run
            raise ScimflowError(unreachable_message(url))
        if approve is not None:
            check_approval(approve, saved.plan_hash)
        elif not sys.stdin.isatty():
            msg = "no approval: give --approve HASH (the plan hash in summary.json), or run on a terminal to be asked"
            raise ApprovalError(msg)
        elif not _prompted(saved, out, err, limit):
            err.print("not approved: nothing applied")
            return 1
        links = read_links(saved.folder, saved.plan_hash)
        if approve is not None:  # the prompt showed the whole diff already
            from scimflow.diff import read_plan_rows, summary_line

            err.print(escape(summary_line(read_plan_rows(saved.folder))))
    except _ERRORS as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    if url:
        return _run_flow(config, saved, hold_actions, hold_users, comment, err)
    return _apply(cfg, pipeline, saved, links, hold_actions, hold_users, comment, out, err)


def _apply(
    cfg: Any,
    pipeline: Any,
    saved: SavedPlan,
    links: pl.DataFrame | None,
    hold_actions: list[str],
    hold_users: list[str],
    comment: str,
    out: Console,
    err: Console,
) -> int:
    """Record the run and the approval, apply through :func:`~scimflow.apply.apply_plan`, finish the run."""
    from scimflow.apply import SyncResult, apply_plan, held_classes_for, status_of

    approval = cli_approval(hold_actions, hold_users, comment)
    holds = held_classes_for(approval, saved.over_budget)  # over budget: held, as `sync --approve` holds them
    approver = cli_approver()
    counts = {k: v for k, v in saved.summary.items() if isinstance(v, int)}
    with pipeline.open_store(cfg) as store:
        run_id = store.start_run("apply", plan_hash=saved.plan_hash)
        store.record_approval(run_id, saved.plan_hash, approver, approval.form_values())
        err.print(f"applying plan {saved.plan_hash[:12]}… approved by {escape(approver)} (run {run_id})")
        try:
            report = apply_plan(
                cfg,
                store,
                saved.folder,
                saved.plan_hash,
                hold_actions=holds,
                hold_users=approval.hold_users,
                matched_pairs=links,
                run_id=run_id,
            )
        except BaseException as exc:
            store.finish_run(run_id, "failed", {**counts, "status": "failed", "error": type(exc).__name__})
            if isinstance(exc, _ERRORS):
                err.print(f"[red]error:[/red] {escape(str(exc))}")
                return 1
            raise
        status = status_of(report)
        result = SyncResult(
            status=status,
            plan_hash=saved.plan_hash,
            plan_dir=str(saved.folder),
            counts=counts,
            report=report,
            approver=approver,
            comment=approval.comment,
        )
        summary = {**counts, "status": status, "plan_hash": saved.plan_hash}
        summary.update(report.model_dump(exclude={"rows", "plan_hash"}))
        store.finish_run(run_id, result.run_status, summary)
    print_report(report, out, err, over_budget=saved.over_budget)
    return result.exit_code
