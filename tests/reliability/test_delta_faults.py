"""Faults during a Graph delta read: the plan equals a clean full read's, or the run fails cleanly.

One converged tenant (generated, 30 users) whose store holds the Entra baseline and both delta links,
behind the socket-level fault proxies. Graph's delta pages are made small (3 objects) so a round pages.
Then Entra changes: a dozen new titles, one user disabled, one deleted, one group membership removed. The
reference is the plan of a clean *full* read. Every delta read under a fault must plan exactly that (by
delta, or by the full read it fell back to, saying so), or fail with a connector error naming the request
and write no plan. A retire the reference does not have (a user the read did not see, taken for a leaver)
fails the test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scimflow.connectors.errors import ConnectorError
from tests.reliability import harness
from tests.reliability.harness import FIGURES, WIDE, Fault, Rig, converge, plan_rows, retire_keys, rig

USERS_DELTA = r"^GET /v1\.0/users/delta\?"
USERS_DELTA_NEXT = r"^GET /v1\.0/users/delta\?.*skiptoken"
GROUPS_DELTA = r"^GET /v1\.0/groups/delta\?"
TIMEOUT = 1.0
FELL_BACK = "delta link expired; fell back to a full read"


def _graph_error(status_code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": status_code, "message": message}}).encode()


SYNC_STATE_NOT_FOUND = _graph_error("syncStateNotFound", "The sync state cannot be found. Please re-sync.")
BAD_PAGE_TOKEN = _graph_error("Request_BadRequest", "The specified page token value has expired or is invalid.")


@dataclass
class Reference:
    rig: Rig
    rows: list[dict[str, Any]]
    verdict: str
    tmp: Path
    n: list[int] = field(default_factory=lambda: [0])

    def out(self) -> Path:
        self.n[0] += 1
        return self.tmp / f"plan-{self.n[0]}"


@dataclass
class Read:
    """What one plan through the proxies gave: rows and verdict, whether Entra was read in full, the note."""

    rows: list[dict[str, Any]]
    verdict: str
    full_read: bool
    note: str | None


def _plan(r: Rig, out: Path, *, full: bool) -> Read:
    """Plan through the proxies in this process, from the stored baseline (a delta read) unless ``full``."""
    from scimflow.config import load_config
    from scimflow.pipeline import run_plan_stages

    outcome, entra, _ = run_plan_stages(load_config(r.config), out=out, full=full)
    return Read(plan_rows(out), outcome.verdict_name, entra.full_read, entra.note)


def _wide(r: Rig) -> Path:
    """The rig's config with wide guardrails (convergence applies the whole first plan)."""
    import yaml

    data = yaml.safe_load(r.config.read_text())
    data["guardrails"] = WIDE
    path = r.folder / "wide.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """A converged tenant with a stored baseline and delta links, then changes in Entra, planned by a full read."""
    from scimflow.config import load_config
    from scimflow.emulators.generate import generate_tenant
    from scimflow.pipeline import open_store

    tmp = tmp_path_factory.mktemp("delta-faults")
    graph, so = generate_tenant(30, seed=23)
    with rig(tmp / "tenant", graph, so, guardrails=harness.REAL, page_size=5, so_page=8, timeout=TIMEOUT) as r:
        converge(_wide(r), tmp / "converge")
        with open_store(load_config(r.config)) as store:
            stored = store.load_baseline(load_config(r.config).tenant_key)
        assert stored is not None and stored.users_link and stored.groups_link, "convergence stored no delta links"
        r.graph_knobs(delta_page_size=3)
        snap = r.host.graph.snapshot()
        users = [u for u in snap["users"] if u.get("accountEnabled")]
        for u in users[2:14]:
            r.graph_admin("PATCH", f"/_emulator/users/{u['id']}", json={"jobTitle": f"Delta title {u['id'][:6]}"})
        r.graph_admin("PATCH", f"/_emulator/users/{users[0]['id']}", json={"accountEnabled": False})
        r.graph_admin("DELETE", f"/_emulator/users/{users[1]['id']}")
        _remove_one_membership(r, snap, skip={users[0]["id"], users[1]["id"]})
        clean = _plan(r, tmp / "clean-full", full=True)
        assert clean.full_read
        by_delta = _plan(r, tmp / "clean-delta", full=False)
        assert not by_delta.full_read, "the clean re-plan did not read by delta: the scenarios would prove nothing"
        assert (by_delta.rows, by_delta.verdict) == (clean.rows, clean.verdict), "a clean delta read differs"
        actions = {row["action"] for row in clean.rows}
        assert {"retire", "update"} <= actions, clean.rows
        yield Reference(r, clean.rows, clean.verdict, tmp)


def _remove_one_membership(r: Rig, snap: dict[str, Any], skip: set[str]) -> None:
    """Take one member (not in ``skip``) out of one group, so the groups delta carries a change too."""
    for group in snap["groups"]:
        members = [m for m in group.get("members", []) if isinstance(m, str) and m not in skip]
        if members:
            r.graph_admin("DELETE", f"/_emulator/groups/{group['id']}/members/{members[0]}")
            return
    pytest.fail("no group with a member to remove")


def _expire_links_now(r: Rig) -> Callable[[], object]:
    """Every stored delta link is expired from now on (Graph's 400 ``syncStateNotFound``), as after 7 days."""
    return lambda: r.graph_knobs(expire_delta_tokens=True, delta_expired_status=400)


@dataclass
class Scenario:
    graph: Callable[[Rig], list[Fault]]
    expect: str  # delta: exact plan, read by delta | fallback: exact plan, by a full read that says so | clean


SCENARIOS: dict[str, Scenario] = {
    "429-with-retry-after-mid-delta": Scenario(
        lambda r: [Fault("status", USERS_DELTA_NEXT, status=429, retry_after="1", times=3)], "delta"
    ),
    "5xx-mid-delta": Scenario(
        lambda r: [
            Fault("status", USERS_DELTA_NEXT, skip=1, status=503, times=2),
            Fault("status", GROUPS_DELTA, status=502),
        ],
        "delta",
    ),
    "page-lost-connection-dropped-mid-page": Scenario(
        lambda r: [Fault("drop", USERS_DELTA_NEXT, skip=1), Fault("drop", GROUPS_DELTA)], "delta"
    ),
    "connection-reset-before-the-page": Scenario(lambda r: [Fault("reset", USERS_DELTA_NEXT, skip=2)], "delta"),
    "page-stalled-beyond-the-timeout": Scenario(
        lambda r: [Fault("stall", USERS_DELTA_NEXT, seconds=TIMEOUT + 1)], "delta"
    ),
    "delta-link-gone-410-at-start": Scenario(lambda r: [Fault("status", USERS_DELTA, status=410)], "fallback"),
    "delta-link-gone-410-mid-read": Scenario(
        lambda r: [Fault("status", USERS_DELTA_NEXT, skip=1, status=410)], "fallback"
    ),
    "sync-state-not-found-mid-read": Scenario(
        lambda r: [Fault("status", USERS_DELTA_NEXT, skip=2, status=400, body=SYNC_STATE_NOT_FOUND)], "fallback"
    ),
    "groups-link-expired-after-the-users-round": Scenario(
        lambda r: [Fault("call", GROUPS_DELTA, action=_expire_links_now(r))], "fallback"
    ),
    "page-token-refused-mid-read": Scenario(
        lambda r: [Fault("status", USERS_DELTA_NEXT, skip=1, status=400, body=BAD_PAGE_TOKEN)], "clean"
    ),
    "truncated-delta-page": Scenario(lambda r: [Fault("truncate", USERS_DELTA_NEXT, skip=1)], "clean"),
    "delta-page-lost-without-links": Scenario(lambda r: [Fault("empty_last", USERS_DELTA_NEXT, skip=1)], "clean"),
    "5xx-persistent-mid-delta": Scenario(
        lambda r: [Fault("status", USERS_DELTA_NEXT, skip=1, status=503, times=10_000)], "clean"
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS), ids=list(SCENARIOS))
def test_delta_fault_gives_the_full_reads_plan_or_a_clean_failure(
    reference: Reference, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under each fault the delta read plans exactly what a clean full read plans, or fails cleanly."""
    sc = SCENARIOS[name]
    r = reference.rig
    r.faults(sc.graph(r))
    writes = r.so_stats()["writes"]
    before = r.injected()
    out = reference.out()
    read: Read | None = None
    error: BaseException | None = None
    caplog.set_level(logging.INFO, logger="scimflow")
    try:
        read = _plan(r, out, full=False)
    except Exception as exc:
        error = exc
        harness.TEXTS.append((f"delta fault {name}", _describe(exc)))
    finally:
        r.faults()
        r.graph_knobs(expire_delta_tokens=False, delta_expired_status=410)
    FIGURES["scenarios"] += 1
    assert r.injected() > before, "the fault never landed: the scenario proves nothing"
    assert r.so_stats()["writes"] == writes, "planning under a fault wrote to SuperOffice"

    if sc.expect == "clean":
        assert error is not None, f"{name}: a broken delta read still produced a plan: {read}"
        assert isinstance(error, ConnectorError), f"not a clean connector error: {type(error).__name__}: {error}"
        assert "https://127.0.0.1:" in str(error) and "GET" in str(error), str(error)
        assert not (out / "plan.jsonl").exists(), "a failed delta read still wrote a plan"
        return
    assert error is None, f"{name}: failed instead of planning exactly: {error!r}"
    assert read is not None
    assert retire_keys(read.rows) <= retire_keys(reference.rows), "a fault turned into retirements"
    assert (read.rows, read.verdict) == (reference.rows, reference.verdict)
    if sc.expect == "delta":
        assert not read.full_read and read.note is None, f"a retried page should not cost a full read: {read.note}"
        return
    assert read.full_read and read.note == FELL_BACK, (read.full_read, read.note)
    said = [rec.getMessage() for rec in caplog.records if rec.name.startswith("scimflow")]
    assert any(FELL_BACK in m for m in said), "the fallback to a full read was not logged"


def test_the_stored_links_still_work_after_the_faults(reference: Reference) -> None:
    """A failed or fallen-back delta read stores nothing: the stored links still read by delta, exactly."""
    read = _plan(reference.rig, reference.out(), full=False)
    assert not read.full_read
    assert (read.rows, read.verdict) == (reference.rows, reference.verdict)


def _describe(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))
