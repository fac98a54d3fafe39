"""Planning for a SCIM target: the same planner, over SCIM users and their computed-group memberships.

Everything about situations, rules, scopes and plan rows is the planner's (:func:`build_plan`); this module
only adapts its inputs and outputs to ARCHITECTURE.md's "SCIM target (contract)":

- **The target frame.** SCIM users (from :func:`scimflow.connectors.scim.read_scim_state`) become target rows
  under the planner's column names; the element values are read from the user's computed groups. SCIM ids
  are strings, the planner's partner key an integer: each SCIM user gets a surrogate key for the join, mapped
  back to its SCIM ``id`` before anything leaves this module (plan rows and links hold the SCIM ``id``).
- **Matching is fixed:** a stored link, then ``userName`` (case-insensitive), then ``externalId`` (= the
  Entra object id). The third key runs as a second pass: only Entra users that found nothing by link or
  ``userName`` pair with a SCIM user nobody found whose ``externalId`` is their id (e.g. users Entra's own
  provisioning job created), and those pairs are stored as links once applied.
- **``externalId`` is the Entra object id.** A matched, in-scope user whose SCIM ``externalId`` is missing or
  another value (Entra's own job sends ``mailNickname`` by default) gets an ``entra_id`` change in its
  ``update`` or ``reactivate`` row; an otherwise unchanged one becomes an ``update`` for it alone. Leavers,
  users out of scope, quarantined, conflicting and unmanaged users are left as they are.
- **Values are not resolved** against SuperOffice's lists (the gateway does that): every value the rules can
  give is valid, so no user is quarantined for an unknown name.
- **Deprovisioning** (``retire`` or ``remove_plan``) deactivates (``active`` false); memberships stay, so a
  returning user gets the same values back.
- **Group rows.** The computed groups the apply creates and the members it adds and removes are rows too
  (``create_group`` / ``update_group``, keyed by the group's name, ``changes`` ``members_added`` /
  ``members_removed`` listing user keys), counted in ``summary.json``. They follow from the user rows (a
  held user's memberships are held with it), so the apply writes them as part of their users' rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from scimflow.computed_groups import membership_delta, rule_values
from scimflow.frames import COMPANY_SCHEMA, GROUP_SCHEMA, PLAN_SCHEMA, ROLE_SCHEMA, SO_SCHEMA, Reference
from scimflow.plan._grace import with_grace
from scimflow.plan._planner import Plan, build_plan
from scimflow.rules import ELEMENTS, RuleSet
from scimflow.vocab import GROUP_ACTIONS, GROUP_COUNT_KEYS, norm_expr

if TYPE_CHECKING:
    import datetime as dt

__all__ = [
    "GROUP_ACTIONS",
    "GROUP_COUNT_KEYS",
    "group_change_rows",
    "plan_scim",
    "scim_reference",
    "scim_rules",
    "scim_target_frame",
]

_INTERNAL = "InternalAssociate"


def scim_rules(rules: RuleSet) -> RuleSet:
    """``rules`` with SCIM's fixed matching (link, then ``userName``; ``externalId`` is a second pass),
    deprovisioning as deactivation (``remove_plan`` deactivates too: a SCIM user has no plan to remove), and
    ``display_name`` mapped to Entra's ``displayName`` unless the rules map it."""
    update: dict[str, Any] = {"match": ["entra_id", "user_name"]}
    if rules.deprovision_action == "remove_plan" or rules.grace is not None:  # grace: plan_scim applies it
        update["deprovision"] = "retire"
    if rules.mapping.display_name is None:  # the contract's displayName: Entra's
        update["mapping"] = rules.mapping.model_copy(update={"display_name": "displayName"})
    return rules.model_copy(update=update)  # keeps the file and lines for error messages


def scim_reference(rules: RuleSet) -> Reference:
    """A reference in which every value the rules can give exists (the gateway resolves names, not us)."""
    values = rule_values(rules)

    def names(*elements: str) -> list[str]:
        return sorted({str(v) for e in elements for v in values[e]})

    def frame(items: list[str], schema: pl.Schema) -> pl.DataFrame:
        first, second = schema.names()
        if first == "license":
            return pl.DataFrame({first: items, second: items}, schema=schema)
        return pl.DataFrame({first: list(range(1, len(items) + 1)), second: items}, schema=schema)

    return Reference(
        roles=frame(names("role"), ROLE_SCHEMA),
        groups=frame(names("primary_group", "secondary_groups"), GROUP_SCHEMA),
        plans=frame(names("user_plan"), PLAN_SCHEMA),
        companies=frame(names("owner_company"), COMPANY_SCHEMA),
    )


def scim_target_frame(users: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(target frame, ids)``: the SCIM users as the planner's target frame (:data:`SO_SCHEMA`, surrogate
    ``associate_id``), and ``ids`` mapping each surrogate (``associate_id``) to its SCIM id (``partner_id``).

    Every SCIM user takes part (there are no system users in SCIM); ``retired`` is ``not active``.
    """
    numbered = users.sort("partner_id").with_row_index("associate_id", offset=1)
    ids = numbered.select(pl.col("associate_id").cast(pl.Int64), pl.col("partner_id").cast(pl.String))
    frame = numbered.with_columns(
        pl.col("associate_id").cast(pl.Int64),
        pl.lit(_INTERNAL).alias("user_type"),
        (~pl.col("active").fill_null(value=True)).alias("retired"),
    )
    columns = [
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in SO_SCHEMA.items()
    ]
    return frame.select(columns), ids


def _with_display_name(target: pl.DataFrame, users: pl.DataFrame) -> pl.DataFrame:
    """The target frame plus the SCIM users' ``display_name`` (a mapped field only a SCIM target has)."""
    names = users.sort("partner_id").select(pl.col("display_name").cast(pl.String))
    return target.with_columns(names.get_column("display_name"))


def _to_surrogate(links: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Stored links (``entra_id``, ``associate_id`` = SCIM id) on the surrogate keys; links to SCIM users
    that are not there any more are left out (their Entra users are matched again, by ``userName``)."""
    return (
        links.select(pl.col("entra_id"), pl.col("associate_id").cast(pl.String).alias("partner_id"))
        .join(ids, on="partner_id")
        .select("entra_id", "associate_id")
    )


def _external_id_pairs(plan: Plan, target: pl.DataFrame, users: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """The third match key: Entra users planned ``create`` paired with the SCIM user nobody found whose
    ``externalId`` is their id (trimmed, case-insensitive); one pair per Entra user and per SCIM user."""
    creates = plan.rows.filter(pl.col("action") == "create").select(
        pl.col("entra_id"), pl.col("entra_id").str.strip_chars().str.to_lowercase().alias("_id")
    )
    if creates.is_empty():
        return pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.Int64})
    found = pl.concat(
        [
            links.select(pl.col("associate_id").cast(pl.Int64)),
            plan.matched_pairs.select(pl.col("associate_id").cast(pl.Int64)),
            plan.rows.select(pl.col("associate_id").cast(pl.Int64)).drop_nulls(),
        ]
    )
    unfound = (
        target.select("associate_id")
        .join(found, on="associate_id", how="anti")
        .join(
            users.sort("partner_id")
            .with_row_index("associate_id", offset=1)
            .select(
                pl.col("associate_id").cast(pl.Int64),
                pl.col("entra_id").str.strip_chars().str.to_lowercase().alias("_id"),
            ),
            on="associate_id",
        )
        .drop_nulls("_id")
    )
    pairs = creates.join(unfound, on="_id").select("entra_id", "associate_id")
    # an externalId shared by two SCIM users (or two Entra ids equal once folded) pairs nobody: ambiguous
    return pairs.filter((pl.len().over("entra_id") == 1) & (pl.len().over("associate_id") == 1))


def _wrong_external_ids(plan: Plan, entra: pl.DataFrame, users: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """The matched pairs (``entra_id``, surrogate ``associate_id``) whose SCIM ``externalId`` (``external_id``)
    is not the Entra object id: missing, or another value (e.g. the ``mailNickname`` Entra's own job sends by
    default). ``active``: the SCIM user's. Pairs come from the links used and the plan's new pairs."""
    scim = (
        users.lazy()
        .sort("partner_id")
        .select(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("associate_id"),  # scim_target_frame's surrogate
            pl.col("entra_id").alias("external_id"),
            pl.col("active").fill_null(value=True),
        )
    )
    pairs = pl.concat(
        [
            links.lazy().select(pl.col("entra_id"), pl.col("associate_id").cast(pl.Int64)),
            plan.matched_pairs.lazy().select(pl.col("entra_id"), pl.col("associate_id").cast(pl.Int64)),
        ]
    )
    # compared exactly first (a link holds the id as Graph gave it: the steady state costs one join); the few
    # that differ are then named by the Entra frame's own id (a link's may differ in case or spaces; matching
    # folds both) and compared again; pairs whose Entra user is gone drop out
    differ = (
        pairs.join(scim, on="associate_id")
        .filter(pl.col("external_id").ne_missing(pl.col("entra_id")))
        .unique(maintain_order=True)
        .collect()
    )
    if differ.is_empty():
        return differ
    named = entra.select(pl.col("id"), norm_expr("user_name", pl.col("id")).alias("_k"))
    return (
        differ.with_columns(norm_expr("user_name", pl.col("entra_id")).alias("_k"))
        .join(named, on="_k")
        .select(pl.col("id").alias("entra_id"), "associate_id", "external_id", "active")
        .filter(norm_expr("entra_id", pl.col("external_id")).ne_missing(norm_expr("entra_id", pl.col("entra_id"))))
        .unique()
        .sort("entra_id")
    )


#: A display name no SCIM user has: given to the partners whose externalId alone differs, it makes the planner
#: list them as ``update`` rows (with its matched rules and explanation), and is taken out of those rows again.
_UNLISTED = "\x00scimflow: only the externalId differs\x00"


def _with_external_id_fixes(
    plan: Plan,
    wrong: pl.DataFrame,
    entra: pl.DataFrame,
    target: pl.DataFrame,
    ref: Reference,
    rules: RuleSet,
    links: pl.DataFrame,
    quarantine: pl.DataFrame | None,
) -> Plan:
    """``plan`` with ``entra_id`` (the SCIM ``externalId``) set to the Entra object id on the pairs of ``wrong``.

    An ``update`` or ``reactivate`` row gets the change beside its others. A pair the plan does not list and
    whose SCIM user is active is either unchanged (in scope, otherwise the same: it becomes an ``update``) or
    out of scope under ``deprovision: ignore`` (left alone). The planner tells them apart when planning again
    with those users' display name made different (:data:`_UNLISTED`). Retired, quarantined and conflicting
    users, leavers and unmanaged users are never touched for it.
    """
    unlisted = wrong.filter(pl.col("active")).join(plan.rows.select("entra_id"), on="entra_id", how="anti")
    marked: set[int] = set(unlisted.get_column("associate_id").to_list())
    if marked:
        made_different = target.with_columns(
            pl.when(pl.col("associate_id").is_in(list(marked)))
            .then(pl.lit(_UNLISTED))
            .otherwise(pl.col("display_name"))
            .alias("display_name")
        )
        again = build_plan(entra, made_different, ref, rules, links, quarantine)
        plan = Plan(
            rows=again.rows,
            counts=again.counts,
            managed_active=again.managed_active,
            managed=again.managed,
            matched_pairs=plan.matched_pairs,
        )
    rows = plan.rows.with_row_index("_i")
    touched = (
        rows.filter(pl.col("action").is_in(["update", "reactivate"]))
        .join(wrong.select("entra_id", "associate_id", "external_id"), on=["entra_id", "associate_id"])
        .sort("_i")
    )
    if touched.is_empty():
        return plan
    fixed: list[str] = []
    for entra_id, partner, external_id, text in touched.select(
        "entra_id", "associate_id", "external_id", "changes"
    ).iter_rows():
        changes: dict[str, Any] = json.loads(text) if text else {}
        if partner in marked and (changes.get("display_name") or {}).get("from") == _UNLISTED:
            del changes["display_name"]
        changes["entra_id"] = {"from": external_id, "to": entra_id}
        fixed.append(json.dumps(changes, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    new = touched.select("_i", pl.Series("_fixed", fixed, dtype=pl.String))
    plan.rows = (
        rows.join(new, on="_i", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_fixed", "changes").alias("changes"))
        .drop("_i", "_fixed")
    )
    return plan


def _with_scim_ids(frame: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its surrogate ``associate_id`` replaced by the SCIM id (a string), order kept."""
    lookup = ids.rename({"associate_id": "_s"})
    return (
        frame.with_columns(pl.col("associate_id").cast(pl.Int64).alias("_s"))
        .join(lookup, on="_s", how="left", maintain_order="left")
        .with_columns(pl.col("partner_id").alias("associate_id"))
        .drop("_s", "partner_id")
    )


def group_changes(
    rows: pl.DataFrame, users: pl.DataFrame, groups: pl.DataFrame, prefix: str
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The group rows that follow from the user rows, and their counts.

    A created user joins the groups of its elements; an updated or reactivated user leaves the groups of the
    elements that change and joins the new values' groups (its other memberships stay); a retired user keeps
    its groups.
    """
    current = {
        pid: set(names or []) for pid, names in users.select("partner_id", "groups").iter_rows() if pid is not None
    }
    added: dict[str, set[str]] = defaultdict(set)
    removed: dict[str, set[str]] = defaultdict(set)
    for action, key, partner, changes_text in rows.select("action", "key", "associate_id", "changes").iter_rows():
        if action not in ("create", "update", "reactivate"):
            continue
        changes: Mapping[str, Any] = json.loads(changes_text) if changes_text else {}
        element_changes = {e: changes[e] for e in ELEMENTS if e in changes}
        if not element_changes:
            continue
        old = current.get(str(partner), set()) if partner is not None else set()
        add, remove = membership_delta(prefix, old, {e: c.get("to") for e, c in element_changes.items()})
        for name in add:
            added[name].add(key)
        for name in remove:
            removed[name].add(key)
    existing = dict(groups.select("display_name", "partner_id").iter_rows()) if groups.height else {}
    out, counts = group_change_rows(added, removed, existing)
    schema = rows.schema
    return pl.DataFrame(out, schema=schema) if out else pl.DataFrame(schema=schema), counts


def plan_scim(
    entra: pl.DataFrame,
    users: pl.DataFrame,
    groups: pl.DataFrame,
    rules: RuleSet,
    links: pl.DataFrame | None = None,
    quarantine: pl.DataFrame | None = None,
    *,
    prefix: str = "scimflow",
    pending: pl.DataFrame | None = None,
    now: dt.datetime | None = None,
) -> Plan:
    """Plan the sync of ``entra`` into a SCIM target whose state :func:`read_scim_state` read.

    ``links`` are the stored pairs (``entra_id``, ``associate_id`` = SCIM id, strings). The result's rows and
    ``matched_pairs`` carry SCIM ids (String) as ``associate_id``; its rows include the group rows, its
    counts :data:`GROUP_COUNT_KEYS` besides the nine. ``pending`` and ``now``: a grace period's stored
    entries (keyed by SCIM id) and the time of this run (:func:`scimflow.plan._grace.with_grace`).
    """
    fixed = scim_rules(rules)
    ref = scim_reference(rules)
    target, ids = scim_target_frame(users)
    target = _with_display_name(target, users)
    stored = (
        _to_surrogate(links, ids)
        if links is not None and links.height
        else pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.Int64})
    )
    plan = build_plan(entra, target, ref, fixed, stored, quarantine)
    extra = _external_id_pairs(plan, target, users, stored)
    if extra.height:
        stored = pl.concat([stored, extra])
        plan = build_plan(entra, target, ref, fixed, stored, quarantine)
        # stored links are left out of matched_pairs; these pairs are new: store them once applied
        plan.matched_pairs = pl.concat([plan.matched_pairs, extra]).unique().sort("entra_id", "associate_id")
    wrong = _wrong_external_ids(plan, entra, users, stored)
    if wrong.height:
        plan = _with_external_id_fixes(plan, wrong, entra, target, ref, fixed, stored, quarantine)
    rows = _with_scim_ids(plan.rows, ids)
    group_rows, group_counts = group_changes(rows, users, groups, prefix)
    full = Plan(
        rows=pl.concat([rows, group_rows]).sort("key", "entra_id", nulls_last=False),
        counts={**plan.counts, **group_counts},
        managed_active=plan.managed_active,
        managed=plan.managed,
        matched_pairs=_with_scim_ids(plan.matched_pairs, ids).select("entra_id", "associate_id"),
    )
    return with_grace(full, rules, pending, now)  # on SCIM ids; a retired user keeps its groups


def group_change_rows(
    added: Mapping[str, Collection[str]], removed: Mapping[str, Collection[str]], existing: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Plan rows (as dicts) of the computed groups whose members change, and their four counts.

    ``added``/``removed``: group name → user keys; ``existing``: group name → its id on the target (a group
    not there is a ``create_group`` row). Shared by the planner and ``scimflow undo``.
    """
    out: list[dict[str, Any]] = []
    for name in sorted(set(added) | set(removed)):
        changes: dict[str, Any] = {}
        if added.get(name):
            changes["members_added"] = {"from": None, "to": sorted(added[name])}
        if removed.get(name):
            changes["members_removed"] = {"from": sorted(removed[name]), "to": None}
        out.append(
            {
                "action": "update_group" if name in existing else "create_group",
                "key": name,
                "entra_id": None,
                "associate_id": existing.get(name),
                "rules": [],
                "changes": json.dumps(changes, sort_keys=True, separators=(",", ":")),
                "reason": None,
                "explain": None,
            }
        )
    counts = {
        "create_group": sum(1 for r in out if r["action"] == "create_group"),
        "update_group": sum(1 for r in out if r["action"] == "update_group"),
        "members_added": sum(len(v) for v in added.values()),
        "members_removed": sum(len(v) for v in removed.values()),
    }
    return out, counts
