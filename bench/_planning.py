"""Planning alone: the vectorised planner on 100,000 and 1,000,000 users with 20 rules, and the reference.

Inputs are prepared once per bench run (:func:`prepare`): a generated 100,000-user tenant (every employee
already has a SuperOffice user, plus unpartnered SuperOffice users, so both sides hold about 100,000
users), converted to the planner's frames and written as Parquet. The 1,000,000-user input is that tenant
tiled ten times with distinct ids, UPNs, e-mails and associate ids (generating a million users in Python
would alone take minutes on two cores; the planner's work does not depend on how the rows were made).

Each scenario process reads the Parquet files, so its peak RSS is the planner's, not the generator's.
The reference planner (``tests/reference_planner.py``, plain Python) is quadratic in matching, so it runs
on a subset of the same input and its time is scaled linearly (which flatters it: the true ratio at full
size is higher).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from bench._common import Result, peak_rss_mib
from scimflow.rules import DEFAULT_MAPPING

__all__ = ["REFERENCE_SUBSET", "plan_fast", "plan_reference", "prepare", "twenty_rules"]

#: Entra users the reference planner plans (its matching is O(Entra x SuperOffice)).
REFERENCE_SUBSET = 2_000
SEED = 9


def twenty_rules() -> dict[str, Any]:
    """A 20-rule set over the generated tenant's groups and attributes, in the reference's expression subset."""
    rules: list[dict[str, Any]] = [
        {"name": "Everyone", "when": {"all": True},
         "set": {"primary_group": {"value": "Fallback group", "scope": "always"},
                 "role": {"value": "User", "scope": "if_not_set"},
                 "owner_company": {"value": "Contoso AS", "scope": "if_not_set"}}},
        {"name": "Sales", "when": {"in_group": "SO Sales"},
         "set": {"user_plan": "Sales Premium", "role": "Sales", "secondary_groups": ["Sales Norway"]}},
        {"name": "Support", "when": {"in_group": ["SO Support"]},
         "set": {"user_plan": {"value": "Service Premium", "scope": "if_not_set"},
                 "secondary_groups": {"value": ["Support"], "scope": "add"}}},
        {"name": "Marketing", "when": {"in_group": "SO Marketing"},
         "set": {"user_plan": {"value": "Marketing Premium", "scope": "if_not_set"},
                 "secondary_groups": ["Marketing"]}},
        {"name": "Nordic managers", "when": {"expr": "country IN ('NO', 'SE') AND jobTitle LIKE '%Manager%'"},
         "set": {"role": "Manager"}},
        {"name": "HR sees confidential data", "when": {"expr": "array_contains(groups, 'HR') OR department = 'HR'"},
         "set": {"confidential": True}},
        {"name": "Swedish company", "when": {"in_group": "Employees", "expr": "country = 'SE'"},
         "set": {"owner_company": {"value": "Contoso AB", "scope": "always"}}},
        {"name": "Danish company", "when": {"expr": "country = 'DK'"},
         "set": {"owner_company": {"value": "Contoso ApS", "scope": "always"}}},
        {"name": "Finnish company", "when": {"expr": "country = 'FI'"},
         "set": {"owner_company": {"value": "Contoso Oy", "scope": "always"}}},
        {"name": "Managers group", "when": {"in_group": "Managers", "not_in_group": ["Contractors"]},
         "set": {"secondary_groups": {"value": ["Management"], "scope": "add"}}},
        {"name": "Oslo sales", "when": {"in_group": "Sales Oslo"},
         "set": {"secondary_groups": {"value": ["Sales Norway"], "scope": "add"}}},
        {"name": "Swedish sales", "when": {"in_group": "SO Sales", "expr": "country = 'SE'"},
         "set": {"secondary_groups": {"value": ["Sales Sweden"], "scope": "add"}}},
        {"name": "Support role", "when": {"expr": "department = 'Support' AND NOT (jobTitle LIKE '%Manager%')"},
         "set": {"role": {"value": "Support", "scope": "if_not_set"}}},
        {"name": "IT admins", "when": {"in_group": "IT", "expr": "jobTitle LIKE '%Administrator%'"},
         "set": {"role": "Administrator"}},
        {"name": "Finance confidential", "when": {"in_group": "Finance"},
         "set": {"confidential": {"value": True, "scope": "if_not_set"}}},
        {"name": "Contractors are users", "when": {"in_group": "Contractors"},
         "set": {"role": {"value": "User", "scope": "always"}}},
        {"name": "No mobile, no sales plan", "when": {"expr": "mobilePhone IS NULL AND department = 'Sales'"},
         "set": {"secondary_groups": {"value": ["Sales Norway"], "scope": "add"}}},
        {"name": "Bergen office", "when": {"expr": "city IN ('Bergen', 'Trondheim')"},
         "set": {"secondary_groups": {"value": ["Sales Norway"], "scope": "add"}}},
        {"name": "Operations", "when": {"expr": "department = 'Operations'"},
         "set": {"role": {"value": "User", "scope": "always"}}},
        {"name": "Interns (disabled rule)", "when": {"expr": "jobTitle LIKE '%Intern%'"}, "enabled": False,
         "set": {"confidential": False}},
    ]
    assert len(rules) == 20
    return {
        "version": 1,
        "match": ["entra_id", "user_name", "email"],
        "mapping": dict(DEFAULT_MAPPING),
        "deprovision": "retire",
        "rules": rules,
    }


def _reference_lists(so_fixture: dict[str, Any]) -> dict[str, Any]:
    return {k: so_fixture.get(k, []) for k in ("roles", "usergroups", "userplans", "contacts")}


def prepare(folder: Path, users: int) -> dict[str, Any]:
    """Generate the tenant and write ``entra.parquet``, ``so.parquet``, ``ref.json`` and ``rules.yaml``."""
    from scimflow.emulators.generate import generate_tenant
    from scimflow.plan.fixtures import frames_from_fixtures

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # Every employee has a SuperOffice user; unpartnered ones bring the SuperOffice side to about N too.
    graph, so = generate_tenant(users, SEED, matched_fraction=1.0, unpartnered_users=max(1, users * 8 // 100))
    t1 = time.perf_counter()
    entra, so_frame, _ = frames_from_fixtures(graph, so)
    entra.write_parquet(folder / "entra.parquet")
    so_frame.write_parquet(folder / "so.parquet")
    (folder / "ref.json").write_text(json.dumps(_reference_lists(so)), encoding="utf-8")
    (folder / "rules.yaml").write_text(yaml.safe_dump(twenty_rules(), sort_keys=False), encoding="utf-8")
    return {"generate_s": t1 - t0, "frames_s": time.perf_counter() - t1, "entra": entra.height, "so": so_frame.height}


def _tile(entra: pl.DataFrame, so: pl.DataFrame, copies: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``copies`` copies of both frames with distinct keys (ids, UPNs, e-mails, associate and person ids)."""
    if copies == 1:
        return entra, so
    step = int(so.select(pl.col("associate_id").max().fill_null(0)).item()) + 1
    pstep = int(so.select(pl.col("person_id").max().fill_null(0)).item()) + 1

    def tag(col: str, k: int) -> pl.Expr:  # "kari@contoso.com" -> "c3.kari@contoso.com"
        return pl.when(pl.col(col).is_null()).then(None).otherwise(pl.lit(f"c{k}.") + pl.col(col)).alias(col)

    es = [
        entra.with_columns(pl.col("id") + pl.lit(f"-{k}") if k else pl.col("id"),
                           *([tag("userPrincipalName", k), tag("mail", k)] if k else []))
        for k in range(copies)
    ]
    ss = [
        so.with_columns(
            pl.col("associate_id") + k * step,
            pl.col("person_id") + k * pstep,
            *([tag("user_name", k), tag("email", k), pl.col("name") + pl.lit(f"-{k}")] if k else []),
        )
        for k in range(copies)
    ]
    return pl.concat(es, rechunk=True), pl.concat(ss, rechunk=True)


def _load(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, Any, Any, dict[str, Any]]:
    from scimflow.frames import Reference
    from scimflow.rules import parse_rules

    text = (folder / "rules.yaml").read_text(encoding="utf-8")
    ref_data = json.loads((folder / "ref.json").read_text(encoding="utf-8"))
    return (
        pl.read_parquet(folder / "entra.parquet"),
        pl.read_parquet(folder / "so.parquet"),
        Reference.from_fixture(ref_data),
        parse_rules(text, source="bench/rules20.yaml"),
        ref_data,
    )


def _empty_links() -> pl.DataFrame:
    return pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.Int64})


#: Timed runs of the 100,000-user plan (the median is reported: one sample on a shared machine varies 2x).
PLAN_REPEATS = 3


def plan_fast(folder: Path, *, copies: int, name: str, title: str) -> Result:
    """``build_plan`` on the prepared input tiled ``copies`` times; time and this process's peak RSS."""
    from scimflow.plan import build_plan

    entra, so, ref, rules, _ = _load(folder)
    entra, so = _tile(entra, so, copies)
    gc.collect()
    rss_inputs = peak_rss_mib()
    build_plan(entra.head(200), so.head(200), ref, rules, _empty_links())  # warm-up: imports, compile paths
    samples: list[float] = []
    for _ in range(PLAN_REPEATS if copies == 1 else 1):  # 1M users: one run (13 s, 3.6 GiB)
        t0 = time.perf_counter()
        plan = build_plan(entra, so, ref, rules, _empty_links())
        samples.append(time.perf_counter() - t0)
    elapsed = statistics.median(samples)
    counts = {k: int(v) for k, v in plan.counts.items()}
    result = Result(
        name=name, title=title, users=entra.height, stages={"plan": elapsed}, total_s=elapsed,
        peak_rss_mib=peak_rss_mib(), changes=sum(counts.get(a, 0) for a in ("create", "update", "retire", "reactivate")),
        notes=[f"{entra.height:,} Entra x {so.height:,} SuperOffice users, 20 rules (19 enabled)"
               + (f"; median of {len(samples)} runs in this process: " + ", ".join(f"{x:.2f}" for x in samples) + " s"
                  if len(samples) > 1 else ""),
               f"inputs loaded: {rss_inputs:,.0f} MiB RSS before planning"],
        extra={"counts": counts, "entra": entra.height, "so": so.height, "rss_inputs_mib": rss_inputs},
    )
    if copies > 1:
        result.notes.append(f"input = the 100k tenant tiled {copies}x with distinct keys")
    return result


def plan_reference(folder: Path, *, subset: int = REFERENCE_SUBSET) -> Result:
    """The reference planner and ``build_plan`` on the same subset; agreement of the counts is checked."""
    from scimflow.plan import build_plan
    from tests.reference_planner import ref_from_fixture, reference_plan

    entra, so, ref, rules, ref_data = _load(folder)
    full_entra, full_so = entra.height, so.height
    entra = entra.head(subset)
    # The SuperOffice users these Entra users match, plus the same share of the others.
    keys = entra.select(pl.col("userPrincipalName").str.strip_chars().str.to_lowercase().alias("k"))
    mails = entra.select(pl.coalesce("mail", "userPrincipalName").str.strip_chars().str.to_lowercase().alias("k"))
    wanted = pl.concat([keys, mails]).get_column("k")
    hit = pl.col("user_name").str.strip_chars().str.to_lowercase().is_in(wanted) | pl.col(
        "email"
    ).str.strip_chars().str.to_lowercase().is_in(wanted)
    partners = so.filter(hit)
    others = so.filter(~hit)
    target = full_so * entra.height // max(1, full_entra)
    so = pl.concat([partners, others.head(max(0, target - partners.height))])

    rule_dict = twenty_rules()
    entra_rows = entra.to_dicts()
    so_rows = so.to_dicts()
    t0 = time.perf_counter()
    ref_plan = reference_plan(entra_rows, so_rows, ref_from_fixture(ref_data), rule_dict, {}, {})
    ref_s = time.perf_counter() - t0
    build_plan(entra.head(50), so.head(50), ref, rules, _empty_links())  # warm-up
    t1 = time.perf_counter()
    fast = build_plan(entra, so, ref, rules, _empty_links())
    fast_s = time.perf_counter() - t1
    fast_counts = {k: int(v) for k, v in fast.counts.items()}
    agree = all(fast_counts.get(k) == v for k, v in ref_plan.counts.items())
    scale = full_entra / entra.height
    return Result(
        name="plan-reference", title=f"reference planner, {entra.height:,}-user subset", users=entra.height,
        stages={"plan": ref_s}, total_s=ref_s, peak_rss_mib=peak_rss_mib(),
        notes=[f"{entra.height:,} Entra x {so.height:,} SuperOffice users of the same input",
               f"build_plan on the same subset: {fast_s:.3f} s ({ref_s / fast_s:,.0f}x faster)",
               "counts agree with build_plan" if agree else "COUNTS DIFFER from build_plan"],
        extra={"reference_s": ref_s, "fast_subset_s": fast_s, "scale": scale, "full_entra": full_entra,
               "full_so": full_so, "reference_counts": ref_plan.counts, "fast_counts": fast_counts, "agree": agree,
               "reference_extrapolated_s": ref_s * scale},
    )
