"""Owner-only writes that follow no symlink, output folders others control refused, loose secret files refused."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scimflow.cli import app
from scimflow.config import ConfigError, load_config
from scimflow.connectors.graph import clear_app_cache
from scimflow.emulators.host import EmulatorHost
from scimflow.files import UnsafePathError, check_private_folder, write_private

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHost]:
    """Both emulators on the worked example, with a config beside them."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    with EmulatorHost(graph, so, tmp_path_factory.mktemp("files") / "emu", rules=FIXTURES / "rules.yaml") as h:
        yield h
        clear_app_cache()


def _plan(host: EmulatorHost, out: Path) -> Any:
    return CliRunner().invoke(app, ["plan", "--config", str(host.config_path), "--out", str(out)])


def _victim(tmp_path: Path) -> tuple[Path, bytes, int]:
    victim = tmp_path / "victim" / "precious.txt"
    victim.parent.mkdir()
    victim.write_bytes(b"do not touch\n")
    victim.chmod(0o644)
    return victim, victim.read_bytes(), victim.stat().st_mode


def test_plan_does_not_write_through_a_symlink_planted_in_out(host: EmulatorHost, tmp_path: Path) -> None:
    """A symlink planted as out/plan.jsonl is replaced by the plan file; its target keeps its bytes and mode."""
    victim, before, mode = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    for name in ("plan.jsonl", "summary.json", "plan.parquet"):
        (out / name).symlink_to(victim)
    result = _plan(host, out)
    assert result.exit_code in (0, 2), result.output
    assert victim.read_bytes() == before and victim.stat().st_mode == mode
    for name in ("plan.jsonl", "summary.json", "plan.parquet"):
        st = os.lstat(out / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, name
    assert json.loads((out / "summary.json").read_text())["plan_hash"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_plan_refuses_an_out_folder_that_is_a_symlink(host: EmulatorHost, tmp_path: Path) -> None:
    """--out naming a symlink to a folder is refused (exit 1, the folder named) and nothing is written there."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    result = _plan(host, link)
    assert result.exit_code == 1
    assert "is a symlink" in result.output and str(link) in result.output.replace("\n", "")
    assert list(real.iterdir()) == []


def test_plan_refuses_a_world_writable_out_folder(host: EmulatorHost, tmp_path: Path) -> None:
    """--out writable by others is refused with its mode and the chmod to run; no plan file is written."""
    out = tmp_path / "open"
    out.mkdir()
    out.chmod(0o777)
    result = _plan(host, out)
    assert result.exit_code == 1
    text = result.output.replace("\n", "")
    assert "writable by group or others (mode 0777)" in text and f"chmod 700 {out}" in text
    assert list(out.iterdir()) == []


def test_group_writable_and_foreign_folders_refused(tmp_path: Path) -> None:
    """A group-writable folder is refused and so is one owned by another user (/ is root's)."""
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)
    with pytest.raises(UnsafePathError, match="writable by group or others"):
        write_private(group / "x", "data")
    assert not (group / "x").exists()
    if os.getuid() != 0:
        with pytest.raises(UnsafePathError, match="belongs to uid 0"):
            check_private_folder(Path("/"))


def test_write_private_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    """An existing 0644 file is replaced by a 0600 one with the new bytes; no temporary file is left behind."""
    folder = tmp_path / "f"
    folder.mkdir(mode=0o700)
    target = folder / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["secret"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_readable_file_secret_refused_by_every_verb(host: EmulatorHost, tmp_path: Path, mode: int) -> None:
    """A file: secret that group or others can read is refused when read (plan, sync, doctor alike), naming it."""
    secret = host.folder / "superoffice-system-user-token"
    cfg = load_config(host.config_path)
    try:
        secret.chmod(mode)
        with pytest.raises(ConfigError) as info:
            cfg.superoffice.system_user_token.reveal()
        text = str(info.value)
        assert str(secret) in text and f"mode {mode:04o}" in text and f"chmod 600 {secret}" in text
        assert secret.read_text().strip() not in text
        result = _plan(host, tmp_path / "out")
        assert result.exit_code == 1 and f"mode {mode:04o}" in result.output
    finally:
        secret.chmod(0o600)
    assert cfg.superoffice.system_user_token.reveal()  # 0600 again: readable


def test_public_certificate_may_be_readable(tmp_path: Path) -> None:
    """The Entra certificate's public half is not a secret: a 0644 public_certificate file still reads."""
    cfg_path = tmp_path / "scimflow.yaml"
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "cert.pem").chmod(0o644)
    (tmp_path / "key.pem").write_text("key")
    (tmp_path / "key.pem").chmod(0o644)
    cfg_path.write_text(
        "entra:\n  tenant_id: t\n  client_id: c\n  certificate:\n    private_key: file:key.pem\n"
        "    public_certificate: file:cert.pem\n    thumbprint: '00'\n"
        "superoffice:\n  webapi_url: https://so/Cust1\n  login_url: https://so/login\n  context_identifier: Cust1\n"
        "  client_secret: file:y\n  system_user_token: file:z\n  private_key: file:k\n"
    )
    cert = load_config(cfg_path).entra.certificate
    assert cert is not None and cert.public_certificate is not None
    assert cert.public_certificate.reveal().startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(ConfigError, match="mode 0644"):
        cert.private_key.reveal()
