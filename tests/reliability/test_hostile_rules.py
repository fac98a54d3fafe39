"""Hostile rule files: every ``corpus/rules-*.yaml`` (but the one valid huge expression) is refused by
``scimflow rules check`` with exit 1, a message naming the file and line (and the rule, for an
expression), in well under a second; and ``plan`` with one never reaches Polars' SQL parser nor a tenant.

The checks run in a child process (a crash, a hang or a blow-up there is the child's exit status, not the
test runner's), one after another in that process, each timed inside it around the command itself
(interpreter start and imports are excluded). The bound is compared with the time of checking the
default rules in the same process, so a busy machine slows both alike.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from scimflow.config import ConfigError, load_config
from scimflow.rules import RuleError, load_rules
from tests.reliability import harness
from tests.reliability.harness import FIGURES, WIDE, rig

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
HOSTILE = sorted(p for p in CORPUS.glob("rules-*.yaml") if p.name != "rules-huge-expr.yaml")
#: A refusal may take this long (seconds of the check itself), or twice the default rules' check if more.
BOUND = 1.0

_CHILD = r"""
import contextlib, io, json, sys, time
import scimflow.cli, scimflow.commands.plan_live, scimflow.commands.rules_cmd  # imports are not timed

def check(path):
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        sys.argv = ["scimflow", "rules", "check", path]
        try:
            scimflow.cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return {"path": path, "code": code, "seconds": time.perf_counter() - start, "output": out.getvalue()}

for path in sys.argv[1:]:
    print("START " + path, file=sys.stderr, flush=True)
    print(json.dumps(check(path)), flush=True)
"""


@pytest.fixture(scope="module")
def checked() -> dict[str, Any]:
    """Run ``rules check`` on the default rules (twice: warm-up, then the baseline) and every hostile file."""
    default = str(ROOT / "rules" / "default.yaml")
    env = {**os.environ, "COLUMNS": "1000", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, default, default, *map(str, HOSTILE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
        check=False,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [ln.removeprefix("START ") for ln in proc.stderr.splitlines() if ln.startswith("START ")]
    assert proc.returncode == 0, (
        f"the checking process died (exit {proc.returncode}) in {started[-1:]}: {proc.stderr[-2000:]}"
    )
    assert len(results) == len(HOSTILE) + 2
    warm, baseline = results[0], results[1]
    assert warm["code"] == 0 and baseline["code"] == 0, baseline["output"]
    return {"baseline": baseline["seconds"], "by_path": {r["path"]: r for r in results[2:]}}


def test_corpus_holds_every_kind_of_attack() -> None:
    """The corpus covers long names, operator chains, growth, bad and big regexes, dotted tricks and YAML bombs."""
    names = {p.name for p in HOSTILE}
    for kind in ("long-identifier", "or-chain", "nested-replace", "regex-invalid", "regex-oversized", "dotted-log2"):
        assert any(kind in n for n in names), kind
    for kind in ("alias-bomb", "alias-recursive", "deep-nesting", "deep-parentheses", "separator"):
        assert any(kind in n for n in names), kind
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize("path", HOSTILE, ids=[p.name for p in HOSTILE])
def test_rules_check_refuses_the_file_fast_naming_file_and_line(checked: dict[str, Any], path: Path) -> None:
    """`scimflow rules check` exits 1 on the file, names it with a line (and the rule for an expression), fast."""
    result = checked["by_path"][str(path)]
    FIGURES["hostile_rule_files"] += 1
    assert result["code"] == 1, result["output"]
    out = " ".join(result["output"].split())
    assert re.search(rf"{re.escape(path.name)}:\d+: ", out), out
    assert "Traceback" not in out, out
    if "expr" in out or "mapping " in out:
        assert "rule '" in out or "mapping " in out, out
    bound = max(BOUND, 2 * checked["baseline"])
    assert result["seconds"] < bound, (
        f"{path.name}: {result['seconds']:.2f} s (default rules: {checked['baseline']:.2f} s)"
    )
    FIGURES["hostile_rule_files_refused"] += 1


def test_plan_with_a_hostile_rule_file_never_reaches_polars_nor_the_tenant(
    tmp_path: Path, worked_graph: dict, worked_so: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan --rules FILE` against the emulators fails with the rule error before any SQL parse or request."""
    parsed: list[str] = []
    real = pl.sql_expr

    def spy(sql: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(str(sql)[:80])
        return real(sql, *args, **kwargs)

    monkeypatch.setattr(pl, "sql_expr", spy)  # Polars' entry point is watched, our code is not changed
    with rig(tmp_path / "tenant", worked_graph, worked_so, guardrails=WIDE) as r:
        before = r.graph_proxy.requests + r.so_proxy.requests
        for path in HOSTILE:
            with pytest.raises(RuleError) as info:
                r.plan(tmp_path / "plan" / path.stem, rules=path)
            assert path.name in str(info.value)
            harness.TEXTS.append((f"hostile rules {path.name}", str(info.value)))
        assert parsed == [], f"pl.sql_expr was reached with: {parsed[:3]}"
        assert r.graph_proxy.requests + r.so_proxy.requests == before, "a hostile rule file let the plan read a tenant"
        bomb = CORPUS / "rules-alias-bomb.yaml"
        argv = ["plan", "--config", str(r.config), "--rules", str(bomb), "--out", str(tmp_path / "cli-plan")]
        proc = subprocess.run(
            [sys.executable, "-m", "scimflow", *argv],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "1000", "NO_COLOR": "1"},
            check=False,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "rules-alias-bomb.yaml:2" in " ".join((proc.stdout + proc.stderr).split())
        assert r.graph_proxy.requests + r.so_proxy.requests == before
    assert not (tmp_path / "cli-plan" / "plan.jsonl").exists()


def test_rule_files_over_the_size_or_value_cap_are_refused(tmp_path: Path) -> None:
    """A rule file over 512 KiB, or with over 100,000 values, is refused before it is built."""
    big = tmp_path / "big.yaml"
    big.write_text("version: 1\n# " + "x" * 600_000 + "\nrules: []\n")
    with pytest.raises(RuleError, match="larger than 524,288 bytes"):
        load_rules(big)
    many = tmp_path / "many.yaml"
    many.write_text("version: 1\nmatch: [" + ",".join(["a"] * 100_001) + "]\nrules: []\n")
    with pytest.raises(RuleError, match=r"many\.yaml:2: more than 100,000 values"):
        load_rules(many)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("entra: &e {tenant_id: t}\nsuperoffice: *e\n", 1, "anchors (&e)"),
        ("a: [x]\nb: *nothing\n", 2, "aliases"),
        ("rules: " + "[" * 100 + "]" * 100 + "\n", 1, "nested more than 64 deep"),
    ],
    ids=["anchor", "alias", "deep"],
)
def test_config_refuses_anchors_aliases_and_deep_nesting_naming_the_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    """scimflow.yaml is loaded by the same safe loader: anchors, aliases and deep nesting are refused with the line."""
    path = tmp_path / "scimflow.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"line {line}" in str(info.value)
    assert words in str(info.value)
