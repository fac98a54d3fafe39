"""Bad input: every file of ``corpus/`` gives a clear error (naming file, line, field or request) or a
quarantine, never a traceback from deep inside and never a write.

Graph and SuperOffice answers are served over real TLS by the fault proxy in front of the emulators (the
file replaces the body of the matching answer); rule files go through the loader and the compiler.
The tenant is the worked example, converged first, so any change row can only come from the bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scimflow.config import ConfigError
from scimflow.connectors.errors import ConnectorError
from scimflow.rules import RuleError
from tests.reliability import harness
from tests.reliability.harness import FIGURES, Fault, Rig, converge, rig

CORPUS = Path(__file__).resolve().parent / "corpus"
SERVED = sorted(p for p in CORPUS.iterdir() if p.name.startswith(("graph-", "so-")))
RULES = sorted(p for p in CORPUS.glob("rules-*") if p.name != "rules-huge-expr.yaml")
#: Valid but useless: a 10,000-character literal that matches nobody (every user falls out of scope).
HUGE_EXPR = CORPUS / "rules-huge-expr.yaml"
CHANGES = ("create", "update", "retire", "reactivate")

#: Inputs that expose a product bug today (see the report): the test must fail until the fix lands.
# Corpus files that once exposed product bugs (fixed; kept here to say why each file exists):
# graph-cyrillic-upn (homoglyph UPN now quarantined), graph-huge-upn (UPN capped at 113 characters),
# graph-id-duplicates (two users sharing an id are both quarantined, not merged), so-duplicate-keys
# (a SuperOffice extract missing linked users is judged unhealthy), so-wrong-types (an archive row
# without a usable associateDbId is a PayloadError).
BUGS: dict[str, str] = {}


def _param(p: Path) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=BUGS[p.name])] if p.name in BUGS else []
    return pytest.param(p, id=p.name, marks=marks)


def _where(name: str) -> str:
    """The request a corpus file answers, by its name."""
    if name.startswith("graph-token-"):
        return r"^POST /[^ ]*/oauth2/v2\.0/token"
    if name.startswith("graph-"):
        return r"^GET /v1\.0/users\?"
    if name.startswith("so-login-"):
        return r"^POST /login/api/PartnerSystemUser/Authenticate"
    return r"^GET /Cust12345/api/v1/User\?"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, worked_graph: dict, worked_so: dict) -> Iterator[Rig]:
    """The worked example behind fault proxies, converged (its clean plan has no change rows left)."""
    tmp = tmp_path_factory.mktemp("corpus")
    with rig(tmp / "tenant", worked_graph, worked_so, guardrails=harness.REAL, page_size=50, so_page=1000) as r:
        wide = r.folder / "wide.yaml"
        wide.write_text(r.config.read_text().replace("max_retire: 5%", "max_retire: 100%"))
        converge(wide, tmp / "converge")
        rows, _ = r.plan(tmp / "clean")
        assert not [x for x in rows if x["action"] in CHANGES], rows
        yield r


def test_corpus_is_big_enough() -> None:
    """The corpus holds at least 20 hostile inputs, served and rule files both."""
    assert len(SERVED) + len(RULES) >= 20 and len(RULES) >= 8 and len(SERVED) >= 12


@pytest.mark.parametrize("path", [_param(p) for p in SERVED])
def test_bad_api_answer_is_refused_or_quarantined(example: Rig, path: Path, tmp_path: Path) -> None:
    """A hostile Graph or SuperOffice answer ends in a clear connector error or quarantine rows; no writes."""
    example.faults(
        graph=[Fault("body", _where(path.name), body=path.read_bytes())] if path.name.startswith("graph-") else [],
        so=[Fault("body", _where(path.name), body=path.read_bytes())] if path.name.startswith("so-") else [],
    )
    writes = example.so_stats()["writes"]
    FIGURES["bad_inputs_tried"] += 1
    try:
        rows, verdict = example.plan(tmp_path / "plan")
    except (ConnectorError, ConfigError) as exc:
        harness.TEXTS.append((f"corpus {path.name}", repr(exc) + str(exc)))
        assert re.search(r"(GET|POST) https://127\.0\.0\.1:\d+/|login service|token", str(exc)), str(exc)  # noqa: PT017 - an error is one allowed outcome; its message is judged
        FIGURES["bad_inputs_refused_or_quarantined"] += 1
        return
    except Exception as exc:
        pytest.fail(f"{path.name}: crashed with {type(exc).__name__}: {exc}")
    finally:
        example.faults()
        FIGURES["writes_from_bad_input"] += example.so_stats()["writes"] - writes
    assert example.injected() > 0
    _judge(path.name, rows, verdict)
    FIGURES["bad_inputs_refused_or_quarantined"] += 1


def _judge(name: str, rows: list[dict[str, Any]], verdict: str) -> None:
    if verdict == "source_unhealthy":
        return  # nothing applies from an unhealthy source (its rows are never written)
    changes = [r for r in rows if r["action"] in CHANGES]
    if name.startswith("so-"):
        # Corrupt SuperOffice data may be repaired from Entra (an update back to Entra's values), but
        # nobody is created twice, retired or reactivated, and nothing hostile is written.
        assert not [r for r in changes if r["action"] != "update"], f"{name}: bad input planned {changes}"
        for r in changes:
            for field, change in r["changes"].items():
                assert _sane(change["to"]), f"{name}: would write a hostile {field}: {str(change['to'])[:80]}"
    else:
        assert not changes, f"{name}: bad input planned changes: {changes}"
    quarantined = [r for r in rows if r["action"] in ("quarantine", "conflict")]
    for r in quarantined:
        assert r["reason"], f"{name}: a quarantine without a reason: {r}"


def _sane(value: Any) -> bool:
    text = str(value)
    return len(text) <= 256 and "\x00" not in text and text.isascii()


@pytest.mark.parametrize("path", RULES, ids=[p.name for p in RULES])
def test_bad_rule_file_is_refused_with_file_and_line(path: Path) -> None:
    """A hostile or malformed rule file raises a RuleError naming the file and line, before any data is read."""
    from scimflow.frames import ENTRA_SCHEMA
    from scimflow.rules import compile_rules, load_rules

    FIGURES["bad_inputs_tried"] += 1
    with pytest.raises(RuleError) as info:
        compile_rules(load_rules(path), ENTRA_SCHEMA)
    message = str(info.value)
    assert f"{path.name}:" in message and re.search(rf"{re.escape(path.name)}:\d+", message), message
    FIGURES["bad_inputs_refused_or_quarantined"] += 1
    assert not Path("/tmp/scimflow-pwned").exists()


def test_huge_expression_is_accepted_but_retires_nobody(example: Rig, tmp_path: Path) -> None:
    """A 10,000-character expression that matches nobody loads, and the retire budget holds the mass retirement."""
    from scimflow.config import load_config
    from scimflow.pipeline import run_plan_stages

    FIGURES["bad_inputs_tried"] += 1
    writes = example.so_stats()["writes"]
    outcome, _, _ = run_plan_stages(load_config(example.config), rules=HUGE_EXPR, out=tmp_path / "plan", full=True)
    assert outcome.summary["retire"] >= 1
    assert "retire" in outcome.held_classes and outcome.verdict_name == "over_budget"
    assert example.so_stats()["writes"] == writes
    FIGURES["bad_inputs_refused_or_quarantined"] += 1
