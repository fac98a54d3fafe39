"""The planner: match Entra users to SuperOffice users, decide each one's situation, diff, plan rows.

All of it is Polars joins and generated expressions over whole frames (see ARCHITECTURE.md,
"Matching and situations" and "Plan files"). Decisions where the contract is silent:

- A link whose Entra user is gone is dropped when a present Entra user finds the same SuperOffice user
  (a user deleted and re-created in Entra takes over its partner instead of retiring it).
- Empty strings count as null when comparing mapped fields (SuperOffice returns ``""`` for an unset
  phone; comparing exactly would never converge).
- Entra ids in links are compared trimmed and lower-cased, like every other key.
- Besides the validation frame, a user is quarantined when its UPN (or mapped ``user_name``) is shared
  by another Entra user, or when a final element value is not in the tenant's lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import polars as pl

from scimflow.exprs import join_present
from scimflow.frames import NO_PLAN_LICENSE, Reference
from scimflow.plan._grace import with_grace
from scimflow.plan._json import json_value, object_member
from scimflow.rules import CompiledRules, RuleError, RuleSet, compile_rules, group_directory
from scimflow.vocab import COUNT_KEYS, ROW_ACTIONS, changed_expr, norm_expr

if TYPE_CHECKING:
    import datetime as dt

    from scimflow.plan._grace import GraceOutcome

__all__ = ["COUNT_KEYS", "ROW_SCHEMA", "Plan", "build_plan"]

ROW_SCHEMA: pl.Schema = pl.Schema(
    {  # type: ignore[arg-type]
        "action": pl.String,
        "key": pl.String,
        "entra_id": pl.String,
        "associate_id": pl.Int64,
        "rules": pl.List(pl.String),
        "changes": pl.String,
        "reason": pl.String,
        "explain": pl.String,
    }
)
_INTERNAL = "InternalAssociate"
#: The planner's inputs are in memory already, and its joins of whole, wide frames take about a quarter less
#: CPU time on the in-memory engine than on Polars 2's default streaming engine (100,000 users, 20 rules).
_ENGINE: Final = "in-memory"
_STR_LIST = pl.List(pl.String)


@dataclass
class Plan:
    """The planner's result (docs/internals.md): listed rows, counts, guardrail bases, and the pairs to link
    (matched pairs that are not stored as links yet)."""

    rows: pl.DataFrame
    counts: dict[str, int]
    managed_active: int
    managed: int
    matched_pairs: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.Int64})
    )
    grace: GraceOutcome | None = None  # deprovisioning's grace period (plan/_grace.py); None: not configured


def _ci(expr: pl.Expr) -> pl.Expr:
    """A key as compared: trimmed, lower-cased, empty → null (the vocabulary's case-insensitive form)."""
    return norm_expr("user_name", expr)


def _nz(expr: pl.Expr) -> pl.Expr:
    """Empty text counts as null."""
    return pl.when(expr != "").then(expr)


def _group_names(rules: RuleSet) -> list[str]:
    return sorted({name for r in rules.rules for _, refs in r.when.group_refs() for name in refs})


def build_plan(
    entra: pl.DataFrame,
    so: pl.DataFrame,
    ref: Reference,
    rules: RuleSet,
    links: pl.DataFrame | None = None,
    quarantine: pl.DataFrame | None = None,
    *,
    pending: pl.DataFrame | None = None,
    now: dt.datetime | None = None,
) -> Plan:
    """Plan the sync of ``entra`` (ENTRA_SCHEMA) into ``so`` (SO_SCHEMA).

    Args:
        entra: every Entra user, quarantined ones included (they take part in matching).
        so: every SuperOffice user (any type, retired included).
        ref: the tenant's reference lists (names rules may use).
        rules: the rule set.
        links: stored pairs (``entra_id``, ``associate_id``).
        quarantine: rows from validation (``id``, ``reason``).
        pending: stored pending retirements and ``now`` the time of this run (the real clock when
            ``None``), for a grace period (:func:`scimflow.plan._grace.with_grace`).

    Raises:
        RuleError: the rules do not compile against this tenant (e.g. an ambiguous group name).
    """
    if rules.mapping.display_name is not None and "display_name" not in so.columns:
        msg = "mapping display_name: only a SCIM target (target: scim) has a display name; remove it"
        raise RuleError(msg, file=rules.source, line=rules.line_of(("mapping", "display_name")))
    compiled = compile_rules(rules, entra.schema, groups=group_directory(entra, _group_names(rules)))
    links_lf = (
        (links.lazy() if links is not None else pl.LazyFrame(schema={"entra_id": pl.String, "associate_id": pl.Int64}))
        .select(pl.col("entra_id"), _ci(pl.col("entra_id")).alias("_link_id"), pl.col("associate_id").cast(pl.Int64))
        .drop_nulls()
        .unique()
    )
    vq = (
        quarantine.lazy() if quarantine is not None else pl.LazyFrame(schema={"id": pl.String, "reason": pl.String})
    ).select(pl.col("id"), pl.col("reason").fill_null("failed validation"))

    # collected once: every later stage reads these (lazy sub-plans would be recomputed per consumer)
    users = _evaluate(compiled, entra, ref, vq).collect(engine=_ENGINE).lazy()
    internal = so.lazy().filter(pl.col("user_type") == _INTERNAL)
    cands = _candidates(rules, users, internal, links_lf).collect(engine=_ENGINE).lazy()
    per_user = cands.group_by("entra_id").agg(
        pl.len().alias("_n"),
        (pl.col("_finders") > 1).any().alias("_shared"),
        pl.col("associate_id").min().alias("_first"),
        pl.col("via").first().alias("_via"),
    )
    # the partner list is only needed to explain conflicts with several partners (few rows)
    partner_lists = (
        cands.filter(pl.len().over("entra_id") > 1)
        .group_by("entra_id")
        .agg(pl.col("associate_id").sort().cast(pl.String).str.join(", ").alias("_partners"))
    )
    wanted = {*compiled.mapping, *compiled.elements, "retired", "user_plan"}
    so_cols = so.lazy().select(
        pl.col("associate_id").alias("_partner_key"),
        *(pl.col(c).alias(f"so_{c}") for c in so.columns if c in wanted),
    )
    matched = (
        users.join(per_user, left_on="id", right_on="entra_id", how="left")
        .join(partner_lists, left_on="id", right_on="entra_id", how="left")
        .with_columns(
            pl.when(pl.col("_n") == 1).then(pl.col("_first")).alias("_partner_key"),
            ((pl.col("_n") > 1) | pl.col("_shared")).fill_null(value=False).alias("_conflict"),
        )
        .join(so_cols, on="_partner_key", how="left")
        .rename({"_partner_key": "partner"})
    )
    if "secondary_groups" in compiled.elements:  # compared as sets: normalise once
        matched = matched.with_columns(
            pl.when(pl.col("partner").is_not_null())
            .then(norm_expr("secondary_groups", pl.col("so_secondary_groups")))
            .alias("so_secondary_groups")
        )
    row_exprs = _row_exprs(compiled, rules)
    # collected once (the rows, the counts and the pairs read it), with only the columns they read
    needed = {"action", "id", "partner"}.union(*(e.meta.root_names() for e in row_exprs))
    decided = _decide(compiled, rules, matched).select(sorted(needed)).collect(engine=_ENGINE).lazy()
    entra_rows = decided.filter(pl.col("action").is_in(ROW_ACTIONS)).select(row_exprs)
    gone = _gone(rules, users, internal, links_lf, cands)
    orphans = _orphan_quarantine(vq, users)
    managed_ids = pl.concat([cands.select("associate_id"), links_lf.select("associate_id")]).unique()
    managed = internal.join(managed_ids, on="associate_id", how="semi").select(
        pl.len().alias("managed"), (~pl.col("retired").fill_null(value=False)).sum().alias("managed_active")
    )
    pairs = pl.concat(
        [
            decided.filter(
                pl.col("partner").is_not_null() & (pl.col("action") != "quarantine") & (pl.col("action") != "conflict")
            ).select(pl.col("id").alias("entra_id"), pl.col("partner").alias("associate_id")),
            gone.select("entra_id", "associate_id"),
        ]
    ).join(links_lf.select("entra_id", "associate_id"), on=["entra_id", "associate_id"], how="anti")  # stored already
    counts_lf = decided.group_by("action").agg(pl.len().alias("n"))
    # unmanaged: users of any type that no Entra user found, no link names, and no conflict involves
    unmanaged = so.lazy().select("associate_id").join(managed_ids, on="associate_id", how="anti").select(pl.len())
    rows_e, rows_g, rows_o, counts_df, gone_df, managed_df, pairs_df, unmanaged_df = pl.collect_all(
        [
            entra_rows,
            gone.filter(pl.col("action") != "unchanged").select(ROW_SCHEMA.names()),
            orphans,
            counts_lf,
            gone.group_by("action").agg(pl.len().alias("n")),
            managed,
            pairs.unique().sort("entra_id", "associate_id"),
            unmanaged,
        ],
        engine=_ENGINE,
    )
    rows = pl.concat([rows_e, rows_g, rows_o], how="vertical").sort("key", "entra_id")
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for frame in (counts_df, gone_df):
        for action, n in frame.iter_rows():
            counts[action] += n
    counts["quarantine"] += rows_o.height
    m_total, m_active = managed_df.row(0)
    counts["unmanaged"] = int(unmanaged_df.item())
    full = Plan(
        rows=rows,
        counts=counts,
        managed_active=int(m_active or 0),
        managed=int(m_total),
        matched_pairs=pairs_df,
    )
    return with_grace(full, rules, pending, now)


def _evaluate(compiled: CompiledRules, entra: pl.DataFrame, ref: Reference, vq: pl.LazyFrame) -> pl.LazyFrame:
    """Rule outcomes, keys and quarantine reasons for every Entra user."""
    # explain is computed once per combination of fired rules (CompiledRules.evaluate), not per user
    rule_out = compiled.evaluate(entra.lazy(), ref=ref, explain=True)
    upn = _ci(pl.col("userPrincipalName"))
    has_un = "user_name" in compiled.mapping
    has_em = "email" in compiled.mapping
    vreasons = vq.group_by("id").agg(pl.col("reason").str.join("; ").alias("_vreason"))
    # the default mapping's user_name is the UPN: its key is the UPN's, and its duplicates are already found
    same = has_un and compiled.ruleset.mapping.user_name.strip() == "userPrincipalName"
    keyed = rule_out.with_columns(
        pl.coalesce(upn, pl.col("id")).alias("key"),
        _ci(pl.col("id")).alias("_id_ci"),
        (upn if same else _ci(pl.col("map_user_name")) if has_un else pl.lit(None, pl.String)).alias("_un"),
        (_ci(pl.col("map_email")) if has_em else pl.lit(None, pl.String)).alias("_em"),
        upn.alias("_upn"),
    ).join(vreasons, on="id", how="left")
    dup_upn = pl.col("_upn").is_not_null() & pl.col("_upn").is_duplicated()
    dup_un = pl.lit(value=False) if same else pl.col("_un").is_not_null() & pl.col("_un").is_duplicated()
    reasons = join_present(
        [
            pl.col("_vreason"),
            pl.when(dup_upn).then(
                pl.concat_str(
                    [pl.lit("userPrincipalName '"), pl.col("_upn"), pl.lit("' is shared by more than one Entra user")]
                )
            ),
            pl.when(dup_un & ~dup_upn).then(
                pl.concat_str(
                    [pl.lit("mapped user_name '"), pl.col("_un"), pl.lit("' is shared by more than one Entra user")]
                )
            ),
            pl.when(pl.col("in_scope")).then(pl.col("unknown")),
        ],
        "; ",
    )
    keyed = keyed.with_columns(reasons.alias("_qreasons"))
    if "user_plan" in compiled.elements:
        # "Not selected" (superlicense-no-selection) is how SuperOffice names *no plan*: a rule setting it
        # means "no plan", which SuperOffice reads back as null; compare and plan it as null.
        no_plan = ref.plans.filter(pl.col("license") == NO_PLAN_LICENSE).get_column("name").to_list()
        if no_plan:
            keyed = keyed.with_columns(
                pl.when(pl.col("el_user_plan").is_in(no_plan))
                .then(pl.lit(None, pl.String))
                .otherwise(pl.col("el_user_plan"))
                .alias("el_user_plan")
            )
    return keyed


def _candidates(rules: RuleSet, users: pl.LazyFrame, internal: pl.LazyFrame, links: pl.LazyFrame) -> pl.LazyFrame:
    """``(entra_id, associate_id, via, _finders)``: partners found by the first key that finds any.

    Keys are tried in ``match`` order, each only for the users the earlier keys found nothing for (in
    steady state every user is linked, so the later joins run on almost nothing).
    """
    found: list[pl.LazyFrame] = []
    remaining = users.select(pl.col("id").alias("entra_id"), "_id_ci", "_un", "_em")
    for via, key in enumerate(rules.match):  # at most three join plans, one per match key
        if key == "email" and rules.mapping.email is None:
            continue
        if key == "entra_id":
            part = remaining.join(
                links.select("_link_id", "associate_id").unique(), left_on="_id_ci", right_on="_link_id"
            ).join(internal.select("associate_id"), on="associate_id", how="semi")
        else:
            mine, theirs = ("_un", "user_name") if key == "user_name" else ("_em", "email")
            part = remaining.drop_nulls(mine).join(
                internal.select("associate_id", _ci(pl.col(theirs)).alias(mine)).drop_nulls(mine), on=mine
            )
        part = (
            part.select("entra_id", "associate_id", pl.lit(via, pl.Int32).alias("via")).collect(engine=_ENGINE).lazy()
        )
        found.append(part)
        remaining = remaining.join(part.select("entra_id"), on="entra_id", how="anti")
    if not found:
        return pl.LazyFrame(
            schema={"entra_id": pl.String, "associate_id": pl.Int64, "via": pl.Int32, "_finders": pl.UInt32}
        )
    return pl.concat(found).with_columns(pl.len().over("associate_id").alias("_finders"))


def _field_exprs(compiled: CompiledRules) -> dict[str, tuple[pl.Expr, pl.Expr, pl.Expr]]:
    """Per field: ``(from, to, changed)`` for an in-scope user and its partner (if any).

    ``changed`` is the vocabulary's comparison (:func:`scimflow.vocab.changed_expr`), the one the apply
    stage and the writers use per value.
    """
    out: dict[str, tuple[pl.Expr, pl.Expr, pl.Expr]] = {}
    for f in compiled.mapping:
        old, new = pl.col(f"so_{f}"), pl.col(f"map_{f}")
        out[f] = (_nz(old), _nz(new), changed_expr(f, old, new))
    for e in compiled.elements:
        new = pl.col(f"el_{e}")
        if e == "secondary_groups":
            old = pl.col("so_secondary_groups")  # normalised in build_plan
        elif e == "confidential":
            old = pl.when(pl.col("partner").is_not_null()).then(pl.col("so_confidential").fill_null(value=False))
        else:
            old = pl.col(f"so_{e}")
        out[e] = (old, new, pl.col(f"set_{e}") & changed_expr(e, old, new, canonical=True))
    return out


def _deprovision_action(rules: RuleSet, retired: pl.Expr, plan: pl.Expr) -> pl.Expr:
    if rules.deprovision_action == "ignore":
        return pl.lit("unchanged")
    if rules.deprovision_action == "remove_plan":
        return pl.when(retired | plan.is_null()).then(pl.lit("unchanged")).otherwise(pl.lit("retire"))
    return pl.when(retired).then(pl.lit("unchanged")).otherwise(pl.lit("retire"))


def _decide(compiled: CompiledRules, rules: RuleSet, matched: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``action`` and the per-field change flags ``_chg_<field>``."""
    fields = _field_exprs(compiled)
    matched = matched.with_columns(
        *(chg.alias(f"_chg_{f}") for f, (_, _, chg) in fields.items()),
        pl.col("so_retired").fill_null(value=False).alias("_retired"),
    )
    has_partner = pl.col("partner").is_not_null()
    any_change = pl.any_horizontal([pl.col(f"_chg_{f}") for f in fields]) if fields else pl.lit(value=False)
    action = (
        pl.when(pl.col("_qreasons").is_not_null())
        .then(pl.lit("quarantine"))
        .when(pl.col("_conflict"))
        .then(pl.lit("conflict"))
        .when(~pl.col("in_scope"))
        .then(
            pl.when(~has_partner)
            .then(pl.lit("out_of_scope"))
            .otherwise(_deprovision_action(rules, pl.col("_retired"), pl.col("so_user_plan")))
        )
        .when(~has_partner)
        .then(pl.lit("create"))
        .when(pl.col("_retired"))
        .then(pl.lit("reactivate"))
        .when(any_change)
        .then(pl.lit("update"))
        .otherwise(pl.lit("unchanged"))
    )
    return matched.with_columns(action.alias("action"))


def _retire_members(rules: RuleSet, is_retire: pl.Expr) -> dict[str, pl.Expr]:
    if rules.deprovision_action == "remove_plan":
        member = pl.concat_str(
            [pl.lit('"user_plan":{"from":'), json_value(pl.col("so_user_plan")), pl.lit(',"to":null}')]
        )
        return {"user_plan": pl.when(is_retire).then(member)}
    return {"active": pl.when(is_retire).then(pl.lit('"active":{"from":true,"to":false}'))}


def _changes_json(members: dict[str, list[pl.Expr]]) -> pl.Expr:
    """``{...}`` from per-field member expressions (null = absent), keys sorted as json.dumps does."""
    ordered = [pl.coalesce(exprs) if len(exprs) > 1 else exprs[0] for _, exprs in sorted(members.items())]
    if not ordered:
        return pl.lit("{}")
    return pl.concat_str([pl.lit("{"), pl.concat_str(ordered, separator=",", ignore_nulls=True), pl.lit("}")])


def _row_exprs(compiled: CompiledRules, rules: RuleSet) -> list[pl.Expr]:
    """The plan row columns for listed Entra users (ROW_SCHEMA order)."""
    action = pl.col("action")
    is_create, is_retire = action == "create", action == "retire"
    is_change = action.is_in(["update", "reactivate"])
    members: dict[str, list[pl.Expr]] = {}
    for f, (old, new, _) in _field_exprs(compiled).items():
        include = (is_create & new.is_not_null()) | (is_change & pl.col(f"_chg_{f}"))
        change = pl.struct(old.alias("from"), new.alias("to")).struct.json_encode()
        members.setdefault(f, []).append(pl.when(include).then(object_member(f, change)))
    for f, expr in _retire_members(rules, is_retire).items():
        members.setdefault(f, []).insert(0, expr)
    members.setdefault("active", []).append(
        pl.when(action == "reactivate").then(pl.lit('"active":{"from":false,"to":true}'))
    )
    via_name = pl.col("_via").replace_strict(dict(enumerate(rules.match)), default=None, return_dtype=pl.String)
    conflict_reason = (
        pl.when(pl.col("_n") > 1)
        .then(
            pl.concat_str(
                [
                    pl.lit("matches "),
                    pl.col("_n").cast(pl.String),
                    pl.lit(" SuperOffice users by "),
                    via_name,
                    pl.lit(" (associate ids "),
                    pl.col("_partners"),
                    pl.lit("); nobody involved is touched"),
                ]
            )
        )
        .otherwise(
            pl.concat_str(
                [
                    pl.lit("shares SuperOffice user "),
                    pl.col("partner").cast(pl.String),
                    pl.lit(" (found by "),
                    via_name,
                    pl.lit(") with another Entra user; nobody involved is touched"),
                ]
            )
        )
    )
    cause = (
        pl.when(~pl.col("enabled"))
        .then(pl.lit("disabled in Entra ID"))
        .otherwise(pl.lit("out of scope: no enabled rule matches"))
    )
    reason = (
        pl.when(action == "quarantine")
        .then(pl.col("_qreasons"))
        .when(action == "conflict")
        .then(conflict_reason)
        .when(is_retire)
        .then(cause)
    )
    explain = pl.concat_str(
        [pl.lit('{"matched_by":'), json_value(via_name), pl.lit(","), pl.col("explain").str.strip_prefix("{")]
    )
    return [
        action.alias("action"),
        pl.col("key"),
        pl.col("id").alias("entra_id"),
        pl.col("partner").alias("associate_id"),
        pl.when(is_retire).then(pl.lit([], dtype=_STR_LIST)).otherwise(pl.col("rules")).alias("rules"),
        pl.when(action.is_in(["quarantine", "conflict"]))
        .then(pl.lit("{}"))
        .otherwise(_changes_json(members))
        .alias("changes"),
        reason.alias("reason"),
        explain.alias("explain"),
    ]


def _gone(
    rules: RuleSet, users: pl.LazyFrame, internal: pl.LazyFrame, links: pl.LazyFrame, cands: pl.LazyFrame
) -> pl.LazyFrame:
    """Rows (ROW_SCHEMA + ``action``) for linked SuperOffice users whose Entra user is gone."""
    partner = internal.select(
        "associate_id",
        pl.col("user_name"),
        pl.col("retired").fill_null(value=False).alias("_retired"),
        pl.col("user_plan").alias("so_user_plan"),
    )
    gone = (
        links.join(users.select("_id_ci"), left_on="_link_id", right_on="_id_ci", how="anti")
        .join(partner, on="associate_id")
        .join(cands.select("associate_id"), on="associate_id", how="anti")
        .sort("entra_id")
        .unique("associate_id", keep="first")
    )
    action = _deprovision_action(rules, pl.col("_retired"), pl.col("so_user_plan"))
    gone = gone.with_columns(action.alias("action"))
    members = {f: [e] for f, e in _retire_members(rules, pl.col("action") == "retire").items()}
    return gone.select(
        pl.col("action"),
        pl.coalesce(_ci(pl.col("user_name")), pl.col("entra_id")).alias("key"),
        pl.col("entra_id"),
        pl.col("associate_id"),
        pl.lit([], dtype=_STR_LIST).alias("rules"),
        _changes_json(members).alias("changes"),
        pl.lit("gone from Entra ID (its linked user no longer exists)").alias("reason"),
        pl.lit('{"matched_by":"entra_id","gone":true}').alias("explain"),
    )


def _orphan_quarantine(vq: pl.LazyFrame, users: pl.LazyFrame) -> pl.LazyFrame:
    """Quarantine rows for validation failures whose user is not in the Entra frame at all."""
    return (
        vq.join(users.select("id"), on="id", how="anti")
        .group_by("id")
        .agg(pl.col("reason").str.join("; "))
        .select(
            pl.lit("quarantine").alias("action"),
            pl.col("id").alias("key"),
            pl.col("id").alias("entra_id"),
            pl.lit(None, pl.Int64).alias("associate_id"),
            pl.lit([], dtype=_STR_LIST).alias("rules"),
            pl.lit("{}").alias("changes"),
            pl.col("reason"),
            pl.lit("{}").alias("explain"),
        )
    )
