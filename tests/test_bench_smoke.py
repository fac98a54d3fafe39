"""Smoke test of the bench harness: a 50-user run with no latency, results written to a temporary folder."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import evaluate_targets, smoke_groups
from bench._common import STAGES, Result, entra_documented
from bench._harness import COLUMNS, machine_info, render_markdown, render_table, run_bench


def test_smoke_run_fills_every_column(tmp_path: Path) -> None:
    """A tiny end-to-end scenario (emulators and pipeline in their own processes) fills the whole table row."""
    results = run_bench(smoke_groups(50), tmp_path / "work")
    assert len(results) == 1
    result = results[0]
    assert result.ok, result.error
    assert all(result.stages[s] is not None for s in STAGES)
    assert result.peak_rss_mib is not None and result.peak_rss_mib > 0
    assert result.graph_requests and result.so_requests and result.so_writes
    assert result.changes is not None and result.changes > 0
    assert result.extra["applied"] == result.changes

    table = render_table(results)
    header, _rule, row = table.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == [name for name, _ in COLUMNS]
    assert len(row.strip("|").split("|")) == len(COLUMNS)

    md = render_markdown(results, machine_info(), targets=evaluate_targets(results, 1.0))
    out = tmp_path / "results.md"
    out.write_text(md, encoding="utf-8")
    text = out.read_text(encoding="utf-8")
    for key in ("date", "commit", "machine"):
        assert f"**{key}**" in text
    assert table in text
    assert "## Targets" in text


def test_entra_column_is_labelled_documented() -> None:
    """The Entra column states the documented cycle time and says it was not measured."""
    assert entra_documented(10_000) == "100 min-13 h (documented)"
    assert "documented" in entra_documented(100_000, incremental=True)


def test_failed_scenario_is_reported_in_the_table() -> None:
    """A scenario that failed shows its error instead of figures."""
    row = render_table([Result(name="x", title="broken", users=5, ok=False, error="boom")]).splitlines()[-1]
    assert "FAILED: boom" in row
