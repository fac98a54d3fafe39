"""The configuration reference (docs/config.md, docs/scimflow.schema.json) and ``prefect-secret:`` references."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml

from scimflow.commands.config_cmd import (
    CONFIG_MD,
    SCHEMA_PATH,
    config_keys,
    config_schema,
    config_schema_text,
    render_config_md,
)

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "regenerate with: uv run python -m scimflow.commands.config_cmd --write"


def test_every_config_field_has_a_description() -> None:
    """Each key of scimflow.yaml says what it does (a Field(description=...) in scimflow/config.py)."""
    missing = [k.key for k in config_keys() if not k.description]
    assert not missing, f"keys without a description in scimflow/config.py: {missing}"


def test_every_config_key_is_in_the_reference() -> None:
    """docs/config.md names every key of the models, dotted (``entra.certificate.thumbprint``)."""
    text = CONFIG_MD.read_text(encoding="utf-8")
    missing = [k.key for k in config_keys() if f"`{k.key}`" not in text]
    assert not missing, f"docs/config.md lacks {missing}; {REGENERATE}"


def test_the_reference_tables_are_current() -> None:
    """The key tables of docs/config.md are exactly what the models generate."""
    text = CONFIG_MD.read_text(encoding="utf-8")
    assert text == render_config_md(text), REGENERATE


def test_the_committed_schema_is_current() -> None:
    """docs/scimflow.schema.json is exactly what the models generate."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == config_schema_text(), REGENERATE


def _doc_example() -> dict:
    text = CONFIG_MD.read_text(encoding="utf-8")
    block = text.split("## An example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


def test_the_schema_accepts_the_reference_example_and_rejects_typos() -> None:
    """docs/config.md's example loads and fits the schema; a misspelt key and a literal secret do not fit."""
    from scimflow.config import parse_config

    schema = config_schema()
    validator = jsonschema.Draft202012Validator(schema)
    example = _doc_example()
    parse_config(example, base=ROOT, source="docs/config.md")  # the models accept it too
    assert not list(validator.iter_errors(example))
    typo = json.loads(json.dumps(example))
    typo["entra"]["client_secet"] = "env:X"
    assert list(validator.iter_errors(typo))
    literal = json.loads(json.dumps(example))
    literal["superoffice"]["client_secret"] = "hunter2"
    assert list(validator.iter_errors(literal))
    guard = schema["$defs"]["Guardrails"]["properties"]
    assert guard["max_retire"]["default"] == "5%" and guard["max_changes"]["default"] == 500


def test_config_schema_command_prints_the_committed_schema() -> None:
    """`scimflow config schema` prints the same JSON as docs/scimflow.schema.json; `config reference` lists keys."""
    proc = subprocess.run(
        [sys.executable, "-m", "scimflow", "config", "schema"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    proc = subprocess.run(
        [sys.executable, "-m", "scimflow", "config", "reference", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    keys = {k["key"] for k in json.loads(proc.stdout)}
    assert {
        "entra.groups",
        "entra.certificate.passphrase",
        "ca_bundle",
        "entra.page_size",
        "entra.authority_host",
    } <= keys


def test_readme_and_setup_link_the_reference_and_no_file_points_at_a_missing_architecture_md() -> None:
    """README.md and docs/setup.md link docs/config.md; no tracked document refers to an ARCHITECTURE.md."""
    assert "docs/config.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(config.md)" in (ROOT / "docs" / "setup.md").read_text(encoding="utf-8")
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    stray = [
        f
        for f in files
        if f.endswith(".md") and "ARCHITECTURE.md" in (ROOT / f).read_text(encoding="utf-8", errors="replace")
    ]
    assert not stray, f"files referring to ARCHITECTURE.md, which is not in the repository: {stray}"


def test_importing_the_core_loads_no_prefect() -> None:
    """`import scimflow.config` (and the CLI) import no Prefect module, even with tasks.prefect_secrets loaded."""
    code = (
        "import sys, scimflow.config, scimflow.cli, tasks.prefect_secrets; "
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_prefect_secret_references_read_through_prefects_client(tmp_path: Path) -> None:
    """A Secret block saved with `scimflow setup prefect-secret` resolves as prefect-secret:NAME; a missing one
    is a ConfigError naming the block, never a value."""
    from scimflow.config import ConfigError, SecretRef

    name = f"scimflow-test-{uuid.uuid4().hex[:8]}"
    value = f"s3cr3t-{uuid.uuid4().hex}"
    proc = subprocess.run(
        [sys.executable, "-m", "scimflow", "setup", "prefect-secret", name],
        input=value + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert value not in proc.stdout + proc.stderr
    assert SecretRef(f"prefect-secret:{name}").reveal() == value
    with pytest.raises(ConfigError) as info:
        SecretRef(f"prefect-secret:{name}-missing").reveal()
    assert f"{name}-missing" in str(info.value) and value not in str(info.value)
