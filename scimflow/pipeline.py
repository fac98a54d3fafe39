"""The sync's stages as plain typed functions: extract, validate, plan (no Prefect here).

``scimflow plan`` calls them directly; the Prefect tasks in ``tasks/`` wrap them one stage each. Every
function takes the configuration (or what it needs of it) and builds its own clients, so a stage can run
in any process.

::

    extract_entra ──┐
                    ├─ validate ─ plan ─► plan files (plan.jsonl, summary.json, plan.parquet) + verdict
    extract_target ─┘   (the config's ``target:``: SuperOffice's Web API, or a SCIM service provider)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from scimflow.frames import ENTRA_SCHEMA, SO_SCHEMA, Reference, conform
from scimflow.vocab import CHANGE_ACTIONS

if TYPE_CHECKING:
    from scimflow.config import Config
    from scimflow.connectors.graph import DeltaLinks
    from scimflow.plan import Cost, GuardrailVerdict, Plan, TargetTiming
    from scimflow.rules import RuleSet
    from scimflow.state import StateStore

__all__ = [
    "EntraExtract",
    "PlanOutcome",
    "ScimExtract",
    "SuperOfficeExtract",
    "TargetExtract",
    "Validated",
    "extract_entra",
    "extract_scim",
    "extract_superoffice",
    "extract_target",
    "load_rule_set",
    "open_store",
    "plan",
    "plan_cost_files",
    "plan_with_store",
    "run_plan_stages",
    "validate",
    "validate_extracts",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntraExtract:
    """The whole Entra tenant as a frame, and how it was read."""

    frame: pl.DataFrame
    links: DeltaLinks | None
    full_read: bool
    note: str | None = None

    @property
    def source_users(self) -> int:
        return self.frame.height


@dataclass(frozen=True)
class SuperOfficeExtract:
    """Every SuperOffice user (any type, retired too) and the tenant's reference lists."""

    users: pl.DataFrame
    reference: Reference
    #: How the Web API answered the extract's reads (round trip, throttling): the cost of the plan.
    timing: TargetTiming | None = None


@dataclass(frozen=True)
class ScimExtract:
    """Every SCIM user (with the element values its computed groups give) and the computed groups
    (:data:`scimflow.connectors.scim.SCIM_USERS_SCHEMA`, :data:`~scimflow.connectors.scim.SCIM_GROUPS_SCHEMA`)."""

    users: pl.DataFrame
    groups: pl.DataFrame
    #: How the SCIM server answered the extract's reads (round trip, throttling): the cost of the plan.
    timing: TargetTiming | None = None


#: What the target's extract gives: SuperOffice's users and lists, or a SCIM provider's users and groups.
TargetExtract = SuperOfficeExtract | ScimExtract


@dataclass(frozen=True)
class Validated:
    """The target's users that passed validation (a SuperOffice frame, or the SCIM users frame for a SCIM
    target), every Entra user (quarantined ones take part in matching) and the quarantined Entra users
    (columns ``id``, ``reason``)."""

    superoffice: pl.DataFrame
    quarantine: pl.DataFrame
    entra_all: pl.DataFrame


@dataclass(frozen=True)
class PlanOutcome:
    """A written plan: its rows, the guardrail verdict, the plan hash and where the files are."""

    plan: Plan
    verdict: GuardrailVerdict
    plan_hash: str
    out: Path
    summary: dict[str, Any]
    source_users: int
    #: The apply's requests and expected duration (also ``cost.json`` beside the plan files).
    cost: Cost | None = None

    @property
    def change_rows(self) -> int:
        """Rows that would change SuperOffice (create, update, retire, reactivate)."""
        return sum(int(self.summary.get(a, 0)) for a in CHANGE_ACTIONS)

    @property
    def row_count(self) -> int:
        """Rows in ``plan.jsonl`` (changes, quarantines and conflicts)."""
        return self.plan.rows.height

    @property
    def held_classes(self) -> list[str]:
        return list(self.summary.get("guardrails", {}).get("held", []))

    @property
    def verdict_name(self) -> str:
        return str(self.summary.get("guardrails", {}).get("verdict", "ok"))


# --- helpers ------------------------------------------------------------------------------------


def open_store(config: Config) -> StateStore:
    """Open (create and migrate when needed) the state store named by ``config.state_url``.

    A SQLite file's missing folders are created 0700 by the store, which refuses a folder others control.
    """
    from scimflow.state import StateStore

    return StateStore(config.state_url)


def load_rule_set(config: Config, rules: Path | None = None) -> RuleSet:
    """Load the rule set: ``rules`` when given (a CLI override), else the config's."""
    from scimflow.rules import load_rules

    return load_rules(Path(rules) if rules is not None else config.rules)


def _graph_source(config: Config) -> Any:
    from scimflow.connectors.graph import GraphSource

    return GraphSource(config.entra, ca_bundle=config.ca_bundle)


# --- stages -------------------------------------------------------------------------------------


def extract_entra(config: Config, store: StateStore | None = None, *, full: bool = False) -> EntraExtract:
    """Read the whole Entra tenant: a delta against the stored baseline when there is one, else a full read.

    An expired delta link falls back to a full read (the connector says so in ``note``). The baseline and
    the new delta links are stored only after a successful apply (:func:`scimflow.apply.finish_apply`).
    """
    from scimflow.connectors.errors import DeltaExpiredError
    from scimflow.connectors.graph import DeltaLinks

    baseline = None if (full or store is None) else store.load_baseline(config.tenant_key)
    links = None
    if baseline is not None and baseline.users_link and baseline.groups_link:
        links = DeltaLinks(users=baseline.users_link, groups=baseline.groups_link)
    with _graph_source(config) as source:
        if baseline is None or links is None:
            result = source.read_delta(None, None)
        else:
            try:
                result = source.read_delta(conform(baseline.frame, ENTRA_SCHEMA), links)
            except DeltaExpiredError:
                log.warning("Graph delta link expired; reading the whole tenant")
                result = source.read_delta(None, None)
    frame = conform(result.frame, ENTRA_SCHEMA)
    log.info(
        "extracted %d Entra users (%s read)%s",
        frame.height,
        "full" if result.full_read else "delta",
        f": {result.note}" if result.note else "",
    )
    return EntraExtract(frame=frame, links=result.links, full_read=bool(result.full_read), note=result.note)


def extract_superoffice(config: Config) -> SuperOfficeExtract:
    """Read every SuperOffice user (all types, retired too) and the reference lists (once: the user read
    decodes ids with the reference the target holds)."""
    from scimflow.connectors.superoffice import SuperOfficeTarget
    from scimflow.plan import RoundTrips

    trips = RoundTrips()
    with SuperOfficeTarget(config.require_superoffice(), ca_bundle=config.ca_bundle) as target:
        trips.attach(target.http)
        reference = target.read_reference()
        users = conform(target.read_users(), SO_SCHEMA)
    log.info("extracted %d SuperOffice users", users.height)
    return SuperOfficeExtract(users=users, reference=reference, timing=trips.timing())


def extract_scim(config: Config, store: StateStore | None = None, entra: EntraExtract | None = None) -> ScimExtract:
    """Read every SCIM user and the computed groups (paged lists; where the server refuses listing, look-ups
    of the stored links' ids, of each Entra user by ``userName``/``externalId``, and of each computed group
    the rules can give)."""
    from scimflow.computed_groups import img_rules
    from scimflow.connectors.scim import ScimClient, read_scim_state
    from scimflow.rules import load_rules

    scim = config.require_scim()
    ids = store.links(string_ids=True).get_column("associate_id").to_list() if store is not None else []
    keys = list(entra.frame.select("userPrincipalName", "id").iter_rows()) if entra is not None else []
    groups = [r.group for r in img_rules(load_rules(config.rules), scim.group_prefix)]
    from scimflow.plan import RoundTrips

    trips = RoundTrips()
    with ScimClient(scim, ca_bundle=config.ca_bundle) as client:
        trips.attach(client.http)
        users, computed = read_scim_state(client, ids=ids, users=keys, group_names=groups)
    log.info("extracted %d SCIM users, %d computed groups", users.height, computed.height)
    return ScimExtract(users=users, groups=computed, timing=trips.timing())


def extract_target(config: Config, store: StateStore | None = None, entra: EntraExtract | None = None) -> TargetExtract:
    """The target's side, as the config's ``target:`` names it."""
    if config.target == "scim":
        return extract_scim(config, store, entra)
    return extract_superoffice(config)


def validate_extracts(entra: EntraExtract, target: TargetExtract) -> Validated:
    """:func:`validate` for either target: a SCIM target's users are checked as the planner will see them
    (the SuperOffice frame's model), and only the valid ones are kept."""
    if isinstance(target, SuperOfficeExtract):
        return validate(entra.frame, target.users)
    from scimflow.plan import scim_target_frame

    frame, ids = scim_target_frame(target.users)
    checked = validate(entra.frame, frame)
    valid = ids.join(checked.superoffice.select("associate_id"), on="associate_id", how="semi")
    users = target.users.join(valid.select("partner_id"), on="partner_id", how="semi")
    return dataclasses.replace(checked, superoffice=users)


def validate(entra: pl.DataFrame, superoffice: pl.DataFrame) -> Validated:
    """Check both frames with the Pandera models; invalid Entra users go to quarantine with a reason.

    A schema-level failure (a missing column, a wrong dtype) raises: no row can be trusted then.
    """
    from scimflow import schemas

    e = schemas.validate_entra(entra)
    s = schemas.validate_so(superoffice)
    quarantine = e.quarantine.select("id", "reason")
    if s.quarantine.height:
        log.warning("%d SuperOffice users left out of matching (invalid rows)", s.quarantine.height)
        blocked = schemas.entra_blocked_by_so(entra, superoffice, s.quarantine).select("id", "reason")
        quarantine = pl.concat([quarantine, blocked.join(quarantine, on="id", how="anti")])
    log.info("validated: %d Entra users, %d quarantined", entra.height, quarantine.height)
    return Validated(superoffice=s.valid, quarantine=quarantine, entra_all=entra)


def _only_user(p: Plan, upn: str) -> Plan:
    """The plan narrowed to one user (by key, the trimmed lower-cased UPN)."""
    key = upn.strip().lower()
    rows = p.rows.filter(pl.col("key") == key)
    counts = dict.fromkeys(p.counts, 0)
    for action in rows.get_column("action").to_list():
        counts[action] = counts.get(action, 0) + 1
    entra_ids = rows.get_column("entra_id").drop_nulls().to_list()
    pairs = p.matched_pairs.filter(pl.col("entra_id").is_in(entra_ids))
    if rows.height == 0:
        counts["unchanged"] = 1
    return dataclasses.replace(p, rows=rows, counts=counts, matched_pairs=pairs)


def plan(
    config: Config,
    rules: RuleSet,
    entra: EntraExtract,
    so: TargetExtract,
    validated: Validated,
    links: pl.DataFrame,
    out: Path,
    *,
    last_source_users: int | None,
    user: str | None = None,
    pending: pl.DataFrame | None = None,
    now: dt.datetime | None = None,
) -> PlanOutcome:
    """Build the plan, judge it against the guardrails and write the plan files into ``out``.

    The planner always sees the whole tenant (a user gone from Entra is only seen that way); ``user``
    narrows the written plan to that one UPN afterwards. Source health (``min_source_users``,
    ``max_source_drop`` against ``last_source_users``) is part of the verdict. ``pending`` (the stored pending
    retirements) and ``now`` (this run's time) serve a grace period (:mod:`scimflow.plan._grace`); recording the
    plan's entries is the caller's (:func:`plan_with_store`).
    """
    from scimflow.plan import build_plan, evaluate_guardrails, plan_scim, write_plan_files

    if isinstance(so, ScimExtract):
        full = plan_scim(
            validated.entra_all,
            validated.superoffice,
            so.groups,
            rules,
            links,
            validated.quarantine,
            prefix=config.require_scim().group_prefix,
            pending=pending,
            now=now,
        )
        present = so.users.get_column("partner_id")
    else:
        full = build_plan(
            validated.entra_all,  # quarantined users take part in matching (their partner is left alone)
            validated.superoffice,
            so.reference,
            rules,
            links,
            quarantine=validated.quarantine,
            pending=pending,  # a grace period's pending retirements (plan/_grace.py)
            now=now,
        )
        present = so.users.get_column("associate_id")
    p = _only_user(full, user) if user else full
    linked_ids = links.get_column("associate_id").unique()
    linked_missing = int((~linked_ids.is_in(present.implode())).sum()) if linked_ids.len() else 0
    verdict = evaluate_guardrails(
        p,
        config.guardrails,
        entra.source_users,
        last_source_users,
        linked=linked_ids.len(),
        linked_missing=linked_missing,
    )
    plan_hash = write_plan_files(p, verdict, out)  # creates ``out`` owner-only (refused if unsafe)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    log.info(
        "planned %d rows (hash %s…), guardrails %s", p.rows.height, plan_hash[:12], summary["guardrails"]["verdict"]
    )
    cost = plan_cost_files(config, so, out, plan_hash, list(verdict.held))  # cost.json beside the plan
    return PlanOutcome(
        plan=p,
        verdict=verdict,
        plan_hash=plan_hash,
        out=out,
        summary=summary,
        source_users=entra.source_users,
        cost=cost,
    )


def plan_cost_files(
    config: Config, so: TargetExtract, out: Path, plan_hash: str, held: Sequence[str] = ()
) -> Cost | None:
    """The cost of applying the plan in ``out`` (its change rows but the ``held`` classes), asked of the writer
    the apply will use and timed with the extract's round trip (:mod:`scimflow.plan._cost`); written as
    ``cost.json`` beside the plan. ``None`` (and no file) when the writer cannot be built: the estimate never
    stops a run."""
    from scimflow.apply import TargetView, read_plan, split_held
    from scimflow.errors import ScimflowError
    from scimflow.plan import plan_cost, write_cost
    from scimflow.writers import new_writer

    rows, _ = split_held(read_plan(out, plan_hash), held)
    if isinstance(so, ScimExtract):
        groups = frozenset(so.groups.get_column("display_name").drop_nulls().to_list())
        seen = TargetView(users=so.users.height, groups=groups)
    else:
        names = frozenset(so.users.get_column("name").drop_nulls().str.to_lowercase().to_list())
        seen = TargetView(users=so.users.height, names=names, companies=so.reference.companies.height)
    try:
        writer = new_writer(config)
    except ScimflowError as exc:
        log.warning("no cost estimate for the plan: %s", exc)
        return None
    try:
        settings = config.require_scim() if isinstance(so, ScimExtract) else config.require_superoffice()
        cost = plan_cost(writer, rows, so.timing, seen, rate_limit_rps=settings.rate_limit_rps)
    finally:
        writer.close()
    write_cost(out, cost)
    log.info("apply cost: %d requests, about %s s", cost.total, cost.estimated_seconds)
    return cost


def run_plan_stages(
    config: Config,
    *,
    rules: Path | None = None,
    out: Path,
    full: bool = False,
    user: str | None = None,
    now: dt.datetime | None = None,
    record: bool = True,
) -> tuple[PlanOutcome, EntraExtract, TargetExtract]:
    """Extract, validate and plan in one call (``scimflow plan``, ``explain`` and the demo's re-plan); ``now``
    is this run's time (the real clock by default); ``record=False`` (``explain``) keeps the store as it was
    (no pending retirement recorded or cancelled, no rules history)."""
    rule_set = load_rule_set(config, rules)
    with open_store(config) as store:
        return _run_plan_stages(config, rule_set, store, out=out, full=full, user=user, now=now, record=record)


def _run_plan_stages(
    config: Config,
    rule_set: RuleSet,
    store: StateStore,
    *,
    out: Path,
    full: bool,
    user: str | None,
    now: dt.datetime | None = None,
    record: bool = True,
) -> tuple[PlanOutcome, EntraExtract, TargetExtract]:
    entra = extract_entra(config, store, full=full)
    so = extract_target(config, store, entra)
    validated = validate_extracts(entra, so)
    outcome = plan_with_store(config, rule_set, store, entra, so, validated, out, user=user, now=now, record=record)
    return outcome, entra, so


def plan_with_store(
    config: Config,
    rules: RuleSet,
    store: StateStore,
    entra: EntraExtract,
    so: TargetExtract,
    validated: Validated,
    out: Path,
    *,
    user: str | None = None,
    now: dt.datetime | None = None,
    record: bool = True,
) -> PlanOutcome:
    """:func:`plan` with the links (a SCIM target's ids are strings) and the last successful source count
    read from ``store``; the plan's rules are recorded there (and a change since the last applied run noted
    beside the plan: :func:`scimflow.rules_diff.note_rules_change`). A grace period's pending retirements are
    read from ``store`` and the plan's recorded in it once its files are written (``now``: this run's time,
    the real clock by default; :mod:`scimflow.plan._grace`). ``record=False`` writes nothing to ``store``."""
    from scimflow.plan import save_grace
    from scimflow.rules_diff import note_rules_change

    outcome = plan(
        config,
        rules,
        entra,
        so,
        validated,
        store.links(string_ids=isinstance(so, ScimExtract)),
        out,
        last_source_users=store.last_successful_source_count(),
        user=user,
        pending=store.pending_retirements(),
        now=now or dt.datetime.now(dt.UTC),  # the time of this run: grace periods are counted from it
    )
    if record:
        save_grace(store, outcome.plan, outcome.verdict)  # pending retirements, recorded as the plan is saved
        note_rules_change(config, rules, store, so, validated, outcome, narrowed=user is not None, now=now)
    return outcome


def new_plan_dir(config: Config) -> Path:
    """A fresh folder for one run's plan files: ``<out_dir>/<UTC time>-<random>``."""
    import datetime as dt
    import secrets

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(config.out_dir) / f"{stamp}-{secrets.token_hex(3)}"
