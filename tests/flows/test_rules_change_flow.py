"""The sync flow's preview says when the rules changed since the last applied run (real Prefect server,
emulators over HTTPS, SQLite state store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowkit import FIXTURES, params, run_flow

from scimflow.config import load_config

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


def _preview(result) -> str:
    from prefect.artifacts import Artifact

    artifact = Artifact.get(result.artifacts["preview"])
    assert artifact is not None
    return str(artifact.data)


def test_preview_names_a_rules_change_and_its_diff_command(worked_example, tmp_path: Path) -> None:
    """After an applied run, a preview with the same rules has no notice; with one edited line it names the
    change, the two users it affects and the diff command."""
    applied = run_flow(params(worked_example, cli_approved=True))
    assert (applied.status, applied.exit_code) == ("applied", 0)

    same = run_flow(params(worked_example, mode="preview"))
    assert "Rules changed" not in _preview(same)

    edited = tmp_path / "contoso-new.yaml"
    text = (FIXTURES / "rules.yaml").read_text()
    edited.write_text(text.replace("      user_plan: Sales Premium\n", "      user_plan: Marketing Premium\n"))
    changed = run_flow(params(worked_example, mode="preview", rules=str(edited)))
    md = _preview(changed)
    assert "Rules changed" in md and "2 users' values or scope differ" in md
    config = load_config(worked_example.config)
    assert f"--config {config.source}" in md and f"rules-last-applied.yaml {edited}" in md
