"""The configuration contract: validation naming keys, secret references, relative paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scimflow.config import Budget, ConfigError, SecretRef, load_config

GOOD = """
entra:
  tenant_id: contoso.onmicrosoft.com
  client_id: 00000000-0000-0000-0000-000000000001
  client_secret: env:TEST_ENTRA_SECRET
superoffice:
  webapi_url: https://sod.superoffice.com/Cust12345
  login_url: https://sod.superoffice.com/login
  context_identifier: Cust12345
  client_secret: file:secrets/app-token
  system_user_token: env:TEST_SO_SYSTEM_USER
  private_key: file:secrets/key.pem
ca_bundle: ca.pem
rules: rules/default.yaml
state_url: sqlite:///state/state.db
guardrails: {max_retire: "5%", max_changes: 500, min_source_users: 1}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "scimflow.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_config_resolves_paths_against_its_folder(tmp_path):
    """Relative paths and file: secrets resolve against the config file's folder, not the cwd."""
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.ca_bundle == (tmp_path / "ca.pem").resolve()
    assert cfg.rules == (tmp_path / "rules/default.yaml").resolve()
    assert cfg.state_url == f"sqlite:///{(tmp_path / 'state/state.db').resolve()}"
    assert cfg.superoffice.client_secret.path == tmp_path / "secrets/app-token"
    assert cfg.guardrails.max_retire.limit(200) == 10
    assert cfg.guardrails.max_changes.limit(10_000) == 500
    assert cfg.guardrails.max_source_drop == Budget.parse("20%")


def test_secrets_resolve_only_when_used_and_never_show(tmp_path, monkeypatch):
    """A secret is read at reveal() time, and neither repr nor str nor the model dump shows its value."""
    cfg = load_config(_write(tmp_path, GOOD))
    monkeypatch.setenv("TEST_ENTRA_SECRET", "s3cr3t-value-xyz")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/app-token").write_text("app-token-value\n")
    (tmp_path / "secrets/app-token").chmod(0o600)  # a secret file others can read is refused
    assert cfg.entra.client_secret is not None
    assert cfg.entra.client_secret.reveal() == "s3cr3t-value-xyz"
    assert cfg.superoffice.client_secret.reveal() == "app-token-value"
    shown = repr(cfg) + str(cfg) + str(cfg.model_dump())
    assert "s3cr3t-value-xyz" not in shown and "app-token-value" not in shown


def test_missing_secret_names_the_reference(tmp_path, monkeypatch):
    """An unset variable or unreadable file gives an error naming the reference."""
    cfg = load_config(_write(tmp_path, GOOD))
    monkeypatch.delenv("TEST_SO_SYSTEM_USER", raising=False)
    with pytest.raises(ConfigError, match="env:TEST_SO_SYSTEM_USER"):
        cfg.superoffice.system_user_token.reveal()
    with pytest.raises(ConfigError, match=r"file:secrets/key\.pem"):
        cfg.superoffice.private_key.reveal()


def test_prefect_secret_without_api_is_a_clear_error(monkeypatch):
    """Without PREFECT_API_URL a prefect-secret reference says why it cannot be read."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError, match="prefect-secret"):
        SecretRef("prefect-secret:so-app-token").reveal()


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace("client_secret: env:TEST_ENTRA_SECRET", "client_secret: plain-literal"), "entra.client_secret"),
        (lambda t: t.replace("  context_identifier: Cust12345\n", ""), "superoffice.context_identifier"),
        (lambda t: t.replace('max_retire: "5%"', 'max_retire: "lots"'), "guardrails.max_retire"),
        (lambda t: t + "unknown_key: 1\n", "unknown_key"),
        (lambda t: t.replace("https://sod.superoffice.com/login", "http://sod/login"), "superoffice.login_url"),
    ],
    ids=["literal-secret", "missing-key", "bad-budget", "unknown-key", "plain-http"],
)
def test_invalid_config_names_the_key(tmp_path, edit, key):
    """Each validation error names the file and the offending key."""
    path = _write(tmp_path, edit(textwrap.dedent(GOOD)))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in str(info.value)
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    """Broken YAML is reported with its line number."""
    path = _write(tmp_path, "entra:\n  tenant_id: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)


def test_exactly_one_entra_credential(tmp_path):
    """Both a secret and a certificate (or neither) is refused."""
    text = textwrap.dedent(GOOD).replace(
        "  client_secret: env:TEST_ENTRA_SECRET\n",
        "  client_secret: env:X\n  certificate: {private_key: file:k.pem, thumbprint: AB}\n",
    )
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(_write(tmp_path, text))
