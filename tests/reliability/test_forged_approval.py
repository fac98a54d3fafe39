"""Forged approvals (issue 21, points 1 and 5): a paused sync driven through the Prefect REST API as an
attacker who reaches it would. An answer that does not carry the plan's hash, names nobody, or holds an
unknown class or user applies nothing (the run asks again with the error, then ends rejected); a class held
over budget is released only by ``release_held``. Each attempt is counted in figures.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow.config import load_config
from scimflow.pipeline import open_store
from tests.flows.approvalkit import approve_input, form_description, paused_keyset, wait_paused_again
from tests.flows.flowkit import WIDE, Tenant, params, start_paused, start_tenant, stop_tenant
from tests.reliability.harness import FIGURES

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("shared_prefect")]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RETIRED = "sara.lind@contoso.com"  # the worked example's one retirement, over budget with max_retire 0
CREATED = ("ola.hansen@contoso.com", "per.berg@contoso.com")


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    """The worked example with its retirement over budget (max_retire 0), approved through the form."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    t = start_tenant(tmp_path / "t", graph, so, rules=FIXTURES / "rules.yaml", guardrails={**WIDE, "max_retire": 0})
    try:
        yield t
    finally:
        stop_tenant(t)


def _resume(api_url: str, run_id: object, run_input: dict[str, Any]) -> dict[str, Any]:
    """POST /flow_runs/{id}/resume as anyone who reaches the API would (retrying a busy server's 503, as
    Prefect's own client does)."""
    for _ in range(10):
        answer = httpx.post(f"{api_url}/flow_runs/{run_id}/resume", json={"run_input": run_input}, timeout=30)
        if answer.status_code != 503:
            break
        time.sleep(1)
    answer.raise_for_status()
    return dict(answer.json())


def _forged(api_url: str, run: Any, run_input: dict[str, Any], tenant: Tenant, needle: str) -> None:
    """One forged answer: accepted by Prefect, refused by the flow, which pauses again showing ``needle``;
    nothing reaches SuperOffice."""
    before_keyset = paused_keyset(run.id)
    before = tenant.so_snapshot()
    FIGURES["forged_approvals_tried"] += 1
    assert _resume(api_url, run.id, run_input)["status"] == "ACCEPT"
    assert wait_paused_again(run.id, before_keyset), "the run ended instead of asking again"
    assert needle in form_description(run.id).replace("\\", ""), form_description(run.id)
    assert tenant.so_snapshot() == before and tenant.so_stats()["writes"] == 0
    FIGURES["forged_approvals_refused"] += 1


def _active(tenant: Tenant, name: str) -> bool:
    (user,) = tenant.users_by_name()[name]
    return not user["Deleted"]


def test_forged_answers_apply_nothing_until_a_correct_release(tenant: Tenant, shared_prefect: str) -> None:
    """A foreign plan hash, no plan hash, a typo'd class and an unknown user apply nothing; the
    correct answer with release_held then applies the whole plan, retirement included."""
    run = start_paused(params(tenant, approval_timeout=120))
    good = approve_input(run.id)
    _forged(shared_prefect, run, {**good, "plan_hash": "0" * 64}, tenant, "is not this run's plan")
    _forged(shared_prefect, run, {k: v for k, v in good.items() if k != "plan_hash"}, tenant, "plan_hash is missing")

    # A class that is not one of the choices: Prefect's server refuses it against the form's schema.
    for typo in ("retires", "retirement"):
        FIGURES["forged_approvals_tried"] += 1
        keyset = paused_keyset(run.id)
        answer = _resume(shared_prefect, run.id, {**good, "hold_actions": [typo]})
        assert answer["status"] == "REJECT" and typo in json.dumps(answer), answer
        assert paused_keyset(run.id) == keyset and tenant.so_stats()["writes"] == 0
        FIGURES["forged_approvals_refused"] += 1
    answer = _resume(shared_prefect, run.id, {**good, "release_held": ["everything"]})
    FIGURES["forged_approvals_tried"] += 1
    assert answer["status"] == "REJECT" and tenant.so_stats()["writes"] == 0
    FIGURES["forged_approvals_refused"] += 1

    # A display name in hold_users is checked by the flow against the plan's keys.
    _forged(shared_prefect, run, {**good, "hold_users": ["Sara Lind"]}, tenant, "'Sara Lind' is not a user key")

    assert (
        _resume(shared_prefect, run.id, {**good, "release_held": ["retire"], "comment": "retire checked"})["status"]
        == "ACCEPT"
    )
    result = run.result()
    assert (result.status, result.exit_code) == ("applied", 0)
    assert result.report is not None and (result.report.applied, result.report.held) == (4, 0)
    assert not _active(tenant, RETIRED) and all(_active(tenant, k) for k in CREATED)
    with open_store(load_config(tenant.config)) as store:
        forms = store.approvals(result.plan_hash)
    refused = [f for f in forms if not f["approve"]]
    assert len(refused) == 3 and all(f["comment"].startswith("refused: ") for f in refused)
    assert forms[-1]["approve"] and "released over budget: retire" in forms[-1]["comment"]
    assert forms[-1]["approver"] == "tester@contoso.com (unverified, entered in the form)"


def test_an_empty_hold_list_does_not_release_a_class_held_over_budget(tenant: Tenant, shared_prefect: str) -> None:
    """`hold_actions: []` without release_held (the attack of issue 21) applies the rest; the retirement stays held."""
    run = start_paused(params(tenant, approval_timeout=120))
    FIGURES["forged_approvals_tried"] += 1
    answer = approve_input(run.id, hold_actions=[], hold_users=[])
    assert _resume(shared_prefect, run.id, answer)["status"] == "ACCEPT"
    result = run.result()
    assert (result.status, result.exit_code) == ("partial", 3)
    assert result.report is not None and (result.report.applied, result.report.held) == (3, 1)
    assert _active(tenant, RETIRED), "the retirement held over budget was applied"
    FIGURES["forged_approvals_refused"] += 1


def test_answers_refused_past_the_limit_end_the_run_rejected(tenant: Tenant, shared_prefect: str) -> None:
    """Refused answers (no approver, stale plan hashes) are asked again a bounded number of times, then the
    run ends rejected with nothing applied, each one journaled."""
    from scimflow.apply._approval import MAX_REFUSALS

    run = start_paused(params(tenant, approval_timeout=120))
    _forged(
        shared_prefect, run, approve_input(run.id, approver=" ", release_held=["retire"]), tenant, "approver is empty"
    )
    forged = approve_input(run.id, plan_hash="f" * 64)
    for _ in range(MAX_REFUSALS - 1):
        _forged(shared_prefect, run, forged, tenant, "is not this run's plan")
    FIGURES["forged_approvals_tried"] += 1
    keyset = paused_keyset(run.id)
    assert _resume(shared_prefect, run.id, forged)["status"] == "ACCEPT"
    assert not wait_paused_again(run.id, keyset), "the run asked again past the limit"
    result = run.result()
    assert (result.status, result.exit_code) == ("rejected", 3)
    assert tenant.so_stats()["writes"] == 0 and _active(tenant, RETIRED)
    with open_store(load_config(tenant.config)) as store:
        forms = store.approvals(result.plan_hash)
    assert not any(f["approve"] for f in forms) and len(forms) >= MAX_REFUSALS + 1
    FIGURES["forged_approvals_refused"] += 1
