"""docs/setup-online.md: its scimflow.yaml example loads with the real config loader, shows every scim: key, and
the guide is linked from README.md and docs/setup.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from scimflow.config import ScimConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "setup-online.md"
MARKER = "<!-- online-config -->"


def config_example(text: str) -> str:
    """The fenced ``yaml`` block right after the ``<!-- online-config -->`` comment."""
    match = re.search(re.escape(MARKER) + r"\s*```yaml\n(.*?)\n```", text, re.DOTALL)
    assert match, f"{GUIDE}: no ```yaml block after {MARKER}"
    return match.group(1)


def test_online_config_example_loads(tmp_path: Path) -> None:
    """The guide's config example, saved beside a rules file, loads as a target: scim config with its values."""
    folder = tmp_path / "deployments" / "contoso"
    folder.mkdir(parents=True)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "contoso.yaml").write_text((ROOT / "rules" / "default.yaml").read_text())
    path = folder / "scimflow.yaml"
    path.write_text(config_example(GUIDE.read_text(encoding="utf-8")), encoding="utf-8")
    config = load_config(path)
    assert config.target == "scim" and config.superoffice is None
    scim = config.require_scim()
    assert scim.dialect == "entra" and scim.group_prefix == "scimflow" and scim.write_concurrency == 4
    assert str(scim.token) == "prefect-secret:scimflow-contoso-img-token"
    assert scim.base_url.startswith("https://")


def test_online_config_example_shows_every_scim_key() -> None:
    """Every field of the scim: block (ScimConfig) appears in the guide's example, and nothing else does."""
    data = yaml.safe_load(config_example(GUIDE.read_text(encoding="utf-8")))
    assert set(data["scim"]) == set(ScimConfig.model_fields)


@pytest.mark.parametrize("doc", ["README.md", "docs/setup.md"])
def test_online_guide_is_linked(doc: str) -> None:
    """README.md and docs/setup.md link to the Online (SCIM) setup guide."""
    assert "setup-online.md" in (ROOT / doc).read_text(encoding="utf-8")
