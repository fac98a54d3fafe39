"""Rule-change impact: what a rule edit does to today's tenant, before it runs (``scimflow rules diff``).

Both rule sets are planned against the same extract (Entra and the target read once), and the two plans are
compared user by user in Polars (joins and generated expressions, no per-user Python):

- a user's *resolved value* of a field under a rule set is what the target would hold after that rule set's
  run: the plan's ``to`` where the plan changes the field, else the target's current value (the other plan's
  ``from``; a field neither plan changes is the same under both). So an element no rule sets any more is
  "kept as it is" (never cleared), exactly as the rules' semantics say, and a quarantined user keeps its
  current values;
- ``enters`` / ``leaves``: in scope under one rule set only (evaluated with the compiled rules); the new
  rule set's action says what follows (``create``, ``retire``, or nothing);
- ``values``: in scope under both (or neither), and some resolved value or the action differs.

Nothing is written: no plan files, no state, no target writes. The run's side (:func:`note_rules_change`)
records each plan's rules (hash and text) in the state store, and when they differ from the last applied
run's, leaves a copy of the old rules and a short note in the plan folder that the preview shows
(:func:`rules_change_lines`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from scimflow.vocab import GROUP_ACTIONS, changed_expr, norm_expr

if TYPE_CHECKING:
    from scimflow.config import Config
    from scimflow.pipeline import PlanOutcome, TargetExtract, Validated
    from scimflow.plan import Plan
    from scimflow.rules import RuleSet
    from scimflow.state import StateStore

__all__ = [
    "DIFF_FIELDS",
    "KINDS",
    "PREVIOUS_RULES_FILE",
    "RULES_CHANGE_FILE",
    "RulesDiff",
    "diff_plans",
    "diff_rule_sets",
    "diff_rules_live",
    "note_rules_change",
    "rules_change_lines",
    "rules_hash",
    "scope_frame",
]

log = logging.getLogger(__name__)

#: The kinds of difference, in the order they are shown.
KINDS: tuple[str, ...] = ("enters", "leaves", "values")
#: Every field a plan's ``changes`` may hold (mapped fields, elements, ``active``) and its type.
DIFF_FIELDS: dict[str, pl.DataType] = {
    **{f: pl.String() for f in ("user_name", "first_name", "last_name", "email", "title", "mobile_phone")},
    "display_name": pl.String(),
    "user_plan": pl.String(),
    "role": pl.String(),
    "primary_group": pl.String(),
    "secondary_groups": pl.List(pl.String()),
    "owner_company": pl.String(),
    "confidential": pl.Boolean(),
    "active": pl.Boolean(),
}
#: In a run's plan folder: the rules of the last applied run, when the run's rules differ from them.
PREVIOUS_RULES_FILE = "rules-last-applied.yaml"
#: In a run's plan folder: what the preview says about the rules' change (JSON).
RULES_CHANGE_FILE = "rules-change.json"

_CHANGES = pl.Struct({f: pl.Struct({"from": t, "to": t}) for f, t in DIFF_FIELDS.items()})
_SEP = "\x1f"


def rules_hash(text: bytes | str) -> str:
    """The rules' content hash: hex SHA-256 of the file's bytes."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass(frozen=True)
class RulesDiff:
    """The users whose outcome differs between two rule sets, one row each.

    ``users`` columns: ``kind`` (:data:`KINDS`), ``key``, ``entra_id``, ``associate_id`` (the partner as a
    string, or null), ``in_scope_old``/``in_scope_new``, ``action_old``/``action_new`` (the plan's action,
    ``unchanged`` when the plan has no row), ``fields`` (the fields whose resolved value differs, sorted),
    ``changes`` (JSON text ``{field: {"from": under OLD, "to": under NEW}}``), ``reason`` (the new plan's).
    """

    users: pl.DataFrame
    old_hash: str = ""
    new_hash: str = ""
    evaluated: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Users per kind, users in all, and how many of those entering or leaving scope would be created or
        retired (a user created under both rule sets is not counted)."""
        by_kind = dict(self.users.group_by("kind").len().iter_rows())
        out = {"users": self.users.height, **{k: int(by_kind.get(k, 0)) for k in KINDS}}
        moved = self.users.filter(pl.col("kind") != "values")
        out["create"] = moved.filter(pl.col("action_new") == "create").height
        out["retire"] = moved.filter(pl.col("action_new") == "retire").height
        return out

    @property
    def differs(self) -> bool:
        return self.users.height > 0

    def to_json(self, *, old: str, new: str) -> str:
        """The whole difference as one JSON document (users' objects built by Polars)."""
        head = {
            "old": {"rules": old, "sha256": self.old_hash},
            "new": {"rules": new, "sha256": self.new_hash},
            "evaluated_users": self.evaluated,
            "counts": self.counts,
        }
        users = self.users.select(
            pl.concat_str(
                [
                    pl.struct(
                        "kind",
                        "key",
                        "entra_id",
                        "associate_id",
                        "in_scope_old",
                        "in_scope_new",
                        "action_old",
                        "action_new",
                        "fields",
                        "reason",
                    )
                    .struct.json_encode()
                    .str.strip_suffix("}"),
                    pl.lit(',"changes":'),
                    pl.col("changes"),
                    pl.lit("}"),
                ]
            ).alias("u")
        ).get_column("u")
        body = json.dumps(head, sort_keys=True)[:-1]
        return body + ',"users":[' + ",".join(users.to_list()) + "]}"


def _side(plan: Plan, tag: str) -> pl.LazyFrame:
    rows = plan.rows.lazy().filter(~pl.col("action").is_in(GROUP_ACTIONS))
    return rows.select(
        pl.col("key"),
        pl.col("entra_id"),
        pl.col("action").alias(f"action_{tag}"),
        pl.col("associate_id").cast(pl.String).alias(f"partner_{tag}"),
        pl.col("changes").alias(f"c_{tag}"),
        pl.col("reason").alias(f"reason_{tag}"),
    )


def _field_exprs(f: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``(under OLD, under NEW, differs)`` of one field's resolved value."""
    o, n = pl.col("c_old").struct.field(f), pl.col("c_new").struct.field(f)
    o_has, n_has = o.is_not_null(), n.is_not_null()
    old_eff = pl.when(o_has).then(o.struct.field("to")).otherwise(n.struct.field("from"))
    new_eff = pl.when(n_has).then(n.struct.field("to")).otherwise(o.struct.field("from"))
    if f == "secondary_groups":  # a set: shown sorted
        old_eff, new_eff = old_eff.list.sort(), new_eff.list.sort()
    return old_eff, new_eff, (o_has | n_has) & changed_expr(f, old_eff, new_eff)


def scope_frame(old: RuleSet, new: RuleSet, entra: pl.DataFrame) -> pl.DataFrame:
    """``key``, ``entra_id``, ``in_scope_old``, ``in_scope_new`` of every Entra user (compiled rules, lazily)."""
    from scimflow.rules import compile_rules

    lf = entra.lazy()
    old_scope = compile_rules(old, entra.schema).evaluate(lf, explain=False).select("in_scope")
    new_scope = compile_rules(new, entra.schema).evaluate(lf, explain=False).select("in_scope")
    keys = lf.select(
        pl.coalesce(norm_expr("user_name", pl.col("userPrincipalName")), pl.col("id")).alias("key"),
        pl.col("id").alias("entra_id"),
    )
    return pl.concat(
        [keys, old_scope.rename({"in_scope": "in_scope_old"}), new_scope.rename({"in_scope": "in_scope_new"})],
        how="horizontal",
    ).collect()


def diff_plans(old: Plan, new: Plan, scope: pl.DataFrame) -> pl.DataFrame:
    """Compare two plans of the same extract (see :class:`RulesDiff` for the columns).

    ``scope`` is :func:`scope_frame`'s; users neither plan lists and whose scope is the same are equal, and
    so are users whose two rows are the same text (most of a small edit's tenant): only the rest are decoded.
    """
    on = ["key", "entra_id"]
    joined = (
        scope.lazy()
        .join(_side(old, "old"), on=on, how="full", coalesce=True, nulls_equal=True)
        .join(_side(new, "new"), on=on, how="full", coalesce=True, nulls_equal=True)
        .with_columns(pl.col("in_scope_old").fill_null(value=False), pl.col("in_scope_new").fill_null(value=False))
    )
    same = [pl.col(f"{c}_old").eq_missing(pl.col(f"{c}_new")) for c in ("in_scope", "action", "partner", "c")]
    candidates = joined.filter(~pl.all_horizontal(same)).collect()  # decode only users whose rows differ
    partner = pl.coalesce("partner_new", "partner_old")
    decoded = candidates.lazy().with_columns(
        *(pl.col(f"c_{s}").str.json_decode(_CHANGES) for s in ("old", "new")),
        *(  # no row: nothing is written (out_of_scope: no partner and not in scope)
            pl.col(f"action_{s}").fill_null(
                pl.when(pl.col(f"in_scope_{s}") | partner.is_not_null())
                .then(pl.lit("unchanged"))
                .otherwise(pl.lit("out_of_scope"))
            )
            for s in ("old", "new")
        ),
    )
    names, effs = [], []
    for f in sorted(DIFF_FIELDS):  # keys sorted, as in plan files
        old_eff, new_eff, differs = _field_exprs(f)
        effs += [differs.alias(f"_d_{f}"), old_eff.alias(f"_o_{f}"), new_eff.alias(f"_n_{f}")]
        names.append(pl.when(differs).then(pl.lit(f + _SEP)))
    fields = pl.concat_str(names, ignore_nulls=True)
    enters = ~pl.col("in_scope_old") & pl.col("in_scope_new")
    leaves = pl.col("in_scope_old") & ~pl.col("in_scope_new")
    values = (fields != "") | (pl.col("action_old") != pl.col("action_new"))
    kind = (
        pl.when(enters).then(pl.lit("enters")).when(leaves).then(pl.lit("leaves")).when(values).then(pl.lit("values"))
    )
    listed = decoded.with_columns(kind.alias("kind"), fields.alias("_fields"), *effs).filter(
        pl.col("kind").is_not_null()
    )
    members = [  # built for the listed users only
        pl.when(pl.col(f"_d_{f}")).then(
            pl.concat_str(
                [
                    pl.lit(f'"{f}":'),
                    pl.struct(pl.col(f"_o_{f}").alias("from"), pl.col(f"_n_{f}").alias("to")).struct.json_encode(),
                ]
            )
        )
        for f in sorted(DIFF_FIELDS)
    ]
    out = listed.select(
        "kind",
        "key",
        "entra_id",
        partner.alias("associate_id"),
        "in_scope_old",
        "in_scope_new",
        "action_old",
        "action_new",
        pl.when(pl.col("_fields") == "")
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("_fields").str.strip_suffix(_SEP).str.split(_SEP))
        .list.sort()
        .alias("fields"),
        pl.concat_str([pl.lit("{"), pl.concat_str(members, separator=",", ignore_nulls=True), pl.lit("}")]).alias(
            "changes"
        ),
        pl.coalesce("reason_new", "reason_old").alias("reason"),
    )
    order = pl.col("kind").replace_strict({k: i for i, k in enumerate(KINDS)}, return_dtype=pl.Int8)
    return out.sort(order, "key").collect()


@dataclass(frozen=True)
class _Inputs:
    """What both plans share: one extract, the links, the pending retirements (a grace period's) and the time."""

    config: Config
    target: TargetExtract
    validated: Validated
    links: pl.DataFrame
    pending: pl.DataFrame | None = None
    now: dt.datetime | None = None


def _plan_for(rules: RuleSet, i: _Inputs) -> Plan:
    """The planner :func:`scimflow.pipeline.plan` runs for this target, without writing anything."""
    from scimflow.pipeline import ScimExtract
    from scimflow.plan import build_plan, plan_scim

    v = i.validated
    if isinstance(i.target, ScimExtract):
        prefix = i.config.require_scim().group_prefix
        groups = i.target.groups
        return plan_scim(
            v.entra_all,
            v.superoffice,
            groups,
            rules,
            i.links,
            v.quarantine,
            prefix=prefix,
            pending=i.pending,
            now=i.now,
        )
    ref = i.target.reference
    return build_plan(v.entra_all, v.superoffice, ref, rules, i.links, v.quarantine, pending=i.pending, now=i.now)


def diff_rule_sets(
    config: Config,
    old: RuleSet,
    new: RuleSet,
    target: TargetExtract,
    validated: Validated,
    links: pl.DataFrame,
    *,
    pending: pl.DataFrame | None = None,
    now: dt.datetime | None = None,
) -> RulesDiff:
    """Plan ``old`` and ``new`` against one extract (with the same pending retirements and time) and compare.

    Raises:
        RuleError: a rule set does not compile against this tenant (e.g. an ambiguous group name).
    """
    inputs = _Inputs(config, target, validated, links, pending, now or dt.datetime.now(dt.UTC))
    old_plan, new_plan = _plan_for(old, inputs), _plan_for(new, inputs)
    users = diff_plans(old_plan, new_plan, scope_frame(old, new, validated.entra_all))
    return RulesDiff(users=users, evaluated=validated.entra_all.height)


def _read_rules(path: Path) -> tuple[RuleSet, str]:
    from scimflow.rules import compile_rules, load_rules

    rules = load_rules(path)
    compile_rules(rules)  # an expression error names the file and line before any network
    return rules, rules_hash(path.read_bytes())


def _existing_store(config: Config) -> StateStore | None:
    """The state store, or ``None`` when its SQLite file does not exist yet (a diff creates nothing)."""
    from sqlalchemy.engine import make_url

    from scimflow.pipeline import open_store

    url = make_url(config.state_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return None
    return open_store(config)


def diff_rules_live(config: Config, old_path: Path, new_path: Path) -> RulesDiff:
    """Extract today's tenant once (as ``scimflow plan`` does) and compare two rule sets over it.

    Reads only: the state store's links and Entra baseline (a delta read when there is one); writes nothing.

    Raises:
        RuleError: a rule file is invalid (file, line, rule).
        ScimflowError: a source or the target cannot be read.
    """
    from scimflow.pipeline import ScimExtract, extract_entra, extract_target, validate_extracts

    old, old_hash = _read_rules(old_path)
    new, new_hash = _read_rules(new_path)
    store = _existing_store(config)
    try:
        entra = extract_entra(config, store)
        target = extract_target(config, store, entra)
        string_ids = isinstance(target, ScimExtract)
        pending = store.pending_retirements() if store is not None else None
        if store is not None:
            links = store.links(string_ids=string_ids)
        else:
            links = pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.String if string_ids else pl.Int64})
    finally:
        if store is not None:
            store.close()
    validated = validate_extracts(entra, target)
    d = diff_rule_sets(config, old, new, target, validated, links, pending=pending)
    return RulesDiff(users=d.users, old_hash=old_hash, new_hash=new_hash, evaluated=d.evaluated)


# --- the run's side: record the rules, say when they changed -------------------------------------


def note_rules_change(
    config: Config,
    rules: RuleSet,
    store: StateStore,
    target: TargetExtract,
    validated: Validated,
    outcome: PlanOutcome,
    *,
    narrowed: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Record the plan's rules (hash and text) in ``store``; when they differ from the last applied run's,
    write that run's rules beside the plan (:data:`PREVIOUS_RULES_FILE`) and the note the preview shows
    (:data:`RULES_CHANGE_FILE`), with the count of users whose values differ (left out when the plan was
    narrowed to one user or the old rules no longer compile here). Returns the note, or ``None``."""
    from scimflow.errors import ScimflowError
    from scimflow.files import write_private
    from scimflow.pipeline import ScimExtract
    from scimflow.rules import parse_rules

    if rules.source is None or not Path(rules.source).is_file():
        return None  # rules given as text (tests): nothing to record
    source = Path(rules.source)
    raw = source.read_bytes()
    current = rules_hash(raw)
    last = store.last_applied_rules()
    store.record_plan_rules(outcome.plan_hash, current, raw.decode("utf-8"))
    if last is None or last.rules_hash == current:
        return None
    copy = outcome.out / PREVIOUS_RULES_FILE
    write_private(copy, last.text)
    users: int | None = None
    if not narrowed:
        try:
            old = parse_rules(last.text, source=str(copy))
            links = store.links(string_ids=isinstance(target, ScimExtract))
            pending = store.pending_retirements()
            d = diff_rule_sets(config, old, rules, target, validated, links, pending=pending, now=now)
            users = d.users.height
        except (ScimflowError, pl.exceptions.PolarsError, ValueError) as exc:  # the notice never stops a run
            log.warning("rules changed since the last applied run; their difference could not be counted: %s", exc)
            users = None
    note = {
        "previous_run": last.run_id,
        "previous_sha256": last.rules_hash,
        "current_sha256": current,
        "previous_rules": str(copy),
        "current_rules": str(source),
        "config": str(config.source) if config.source else None,
        "users_differ": users,
    }
    write_private(outcome.out / RULES_CHANGE_FILE, json.dumps(note, sort_keys=True, indent=2) + "\n")
    return note


def rules_change_lines(plan_dir: Path | str) -> list[str]:
    """The preview's notice (markdown lines) when the plan folder holds a rules-change note, else none."""
    from scimflow.preview import md_code

    path = Path(plan_dir) / RULES_CHANGE_FILE
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(note, dict):
        return []
    config = note.get("config") or "CFG"
    command = f"scimflow rules diff {note.get('previous_rules')} {note.get('current_rules')} --config {config}"
    count = note.get("users_differ")
    impact = f" {int(count)} users' values or scope differ." if isinstance(count, int) else ""
    old, new = str(note.get("previous_sha256", ""))[:12], str(note.get("current_sha256", ""))[:12]
    return [
        "",
        f"**Rules changed** since the last applied run (run {md_code(str(note.get('previous_run', '')))}; "
        f"sha256 {md_code(old)} → {md_code(new)}).{impact} What the change does: {md_code(command)}",
    ]
