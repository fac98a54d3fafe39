"""The operator's verbs as a user runs them (subprocess): journal, state, setup helpers."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import polars as pl
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.flows.flowkit import FIXTURES, WIDE, Tenant, start_tenant, stop_tenant, worked_example_tenant

ROOT = Path(__file__).resolve().parents[1]
APPROVER = "ops.lead@contoso.com"
DELTA_TOKEN = "Zm9vYmFyLXNlY3JldC1kZWx0YS10b2tlbg"


def scimflow(*args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``scimflow ARGS`` as a user would (a child process, output piped)."""
    return subprocess.run(
        [sys.executable, "-m", "scimflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        input=stdin,
    )


@dataclass
class Applied:
    """The worked example planned with `scimflow plan`, approved by APPROVER and applied."""

    tenant: Tenant
    plan_dir: Path
    plan_hash: str
    run_id: str


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    """The worked example: `scimflow plan`, an approval recorded, the saved plan applied (no Prefect)."""
    from scimflow.apply import apply_plan
    from scimflow.config import load_config
    from scimflow.state import StateStore

    folder = tmp_path_factory.mktemp("operator")
    with worked_example_tenant(folder / "tenant") as tenant:
        plan_dir = folder / "plan"
        proc = scimflow("plan", "--config", str(tenant.config), "--out", str(plan_dir))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        plan_hash = json.loads((plan_dir / "summary.json").read_text())["plan_hash"]
        config = load_config(tenant.config)
        with StateStore(config.state_url) as store:
            run_id = store.start_run("approve", plan_hash=plan_hash)
            store.record_approval(run_id, plan_hash, APPROVER, {"approve": True, "comment": "looks right"})
            report = apply_plan(config, store, plan_dir, plan_hash, run_id=run_id)
            assert report.failed == 0 and report.applied >= 4
            store.finish_run(run_id, "completed", {"applied": report.applied})
        yield Applied(tenant=tenant, plan_dir=plan_dir, plan_hash=plan_hash, run_id=run_id)


def test_journal_for_a_user_shows_the_change_its_approver_and_outcome(applied: Applied) -> None:
    """`journal --user` shows kari's update with its from → to values, who approved it, and that it was verified."""
    cfg = str(applied.tenant.config)
    proc = scimflow("journal", "--config", cfg, "--user", "Kari.Nordmann@contoso.com", "--plans", str(applied.plan_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "kari.nordmann@contoso.com" in out
    assert "role: Sales → Manager" in out and "title: Sales Rep → Sales Manager" in out
    assert APPROVER in out and "verified" in out
    assert "\x1b[" not in out  # plain when piped
    assert "ola.hansen" not in out  # only the user asked for


def test_journal_json_filters_by_plan_run_and_since(applied: Applied) -> None:
    """`journal --json` parses to rows with changes and approver; --plan/--run prefixes and --since select."""
    cfg = str(applied.tenant.config)
    proc = scimflow("journal", "--config", cfg, "--plan", applied.plan_hash[:10], "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["action"] for r in rows} >= {"create", "update", "retire"}
    kari = next(r for r in rows if r["key"] == "kari.nordmann@contoso.com")
    assert kari["approver"] == APPROVER and kari["approved"] is True and kari["status"] == "verified"
    assert kari["changes"] is None and kari["plan_files_found"] is False  # plan files outside out_dir: not found
    proc = scimflow("journal", "--config", cfg, "--run", applied.run_id[:8], "--plans", str(applied.plan_dir), "--json")
    by_run = json.loads(proc.stdout)
    assert len(by_run) == len(rows)
    kari = next(r for r in by_run if r["key"] == "kari.nordmann@contoso.com")
    assert kari["changes"]["role"] == {"from": "Sales", "to": "Manager"}
    assert json.loads(scimflow("journal", "--config", cfg, "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(scimflow("journal", "--config", cfg, "--since", "1d", "--json").stdout)) == len(rows)
    bad = scimflow("journal", "--config", cfg, "--since", "last tuesday")
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_state_show_never_prints_a_delta_link_and_reset_baseline_needs_confirmation(applied: Applied) -> None:
    """`state show` reports the baseline and says a delta link is present without printing it; reset asks first."""
    from scimflow.config import load_config
    from scimflow.state import StateStore

    cfg = str(applied.tenant.config)
    config = load_config(cfg)
    link = f"https://graph.example/v1.0/users/delta?$deltatoken={DELTA_TOKEN}"
    with StateStore(config.state_url) as store:
        frame = pl.DataFrame({"id": ["a", "b", "c"]})
        store.save_baseline(config.tenant_key, frame, users_link=link, groups_link=None)
    proc = scimflow("state", "show", "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    assert DELTA_TOKEN not in proc.stdout and "deltatoken" not in proc.stdout
    assert "3 users" in proc.stdout and f"present ({len(link)} characters" in proc.stdout
    assert "absent" in proc.stdout  # the groups link
    doc = json.loads(scimflow("state", "show", "--config", cfg, "--json").stdout)
    assert DELTA_TOKEN not in json.dumps(doc)
    assert doc["baseline"]["users_delta_link"]["present"] is True and doc["runs"] >= 1
    assert doc["last_run"]["id"] == applied.run_id and doc["links"] >= 1

    refused = scimflow("state", "reset-baseline", "--config", cfg, stdin="")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    with StateStore(config.state_url) as store:
        assert store.load_baseline(config.tenant_key) is not None  # nothing changed
    done = scimflow("state", "reset-baseline", "--config", cfg, "--yes")
    assert done.returncode == 0, done.stderr
    with StateStore(config.state_url) as store:
        assert store.load_baseline(config.tenant_key) is None
    assert "none (the next run reads Entra in full)" in scimflow("state", "show", "--config", cfg).stdout


def _b64(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def _rsa_xml(key: rsa.RSAPrivateKey) -> str:
    """The key as SuperOffice's Developer Portal hands it out (.NET's RSA ToXmlString(true))."""
    priv = key.private_numbers()
    pub = priv.public_numbers
    parts = {
        "Modulus": pub.n,
        "Exponent": pub.e,
        "P": priv.p,
        "Q": priv.q,
        "DP": priv.dmp1,
        "DQ": priv.dmq1,
        "InverseQ": priv.iqmp,
        "D": priv.d,
    }
    return "<RSAKeyValue>" + "".join(f"<{k}>{_b64(v)}</{k}>" for k, v in parts.items()) + "</RSAKeyValue>"


def test_setup_helpers_round_trip_against_both_emulators(tmp_path: Path) -> None:
    """A PEM from `setup superoffice-key` signs the SuperOffice login and a `setup entra-certificate` certificate
    logs in to Graph: `scimflow plan` with both credentials reads both emulators."""
    so_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    xml = tmp_path / "superoffice-app.xml"
    xml.write_text(_rsa_xml(so_key))
    pem = tmp_path / "superoffice-app.pem"
    proc = scimflow("setup", "superoffice-key", str(xml), "--out", str(pem))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == so_key.private_numbers()

    key_path, cert_path = tmp_path / "entra-key.pem", tmp_path / "entra-cert.pem"
    proc = scimflow("setup", "entra-certificate", "--out-key", str(key_path), "--out-cert", str(cert_path), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sha1 = cert.fingerprint(hashes.SHA1())
    assert info["thumbprint"] == sha1.hex().upper()
    assert info["x5t"] == base64.urlsafe_b64encode(sha1).rstrip(b"=").decode()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    public_pem = so_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tenant = start_tenant(
        tmp_path / "tenant",
        graph,
        so,
        rules=FIXTURES / "rules.yaml",
        guardrails=WIDE,
        graph_settings={"certificate_thumbprints": {info["thumbprint"]: cert_path.read_bytes()}, "client_secret": None},
        superoffice_settings={"app_public_key_pem": public_pem},
    )
    try:
        data: dict[str, Any] = yaml.safe_load(tenant.config.read_text())
        data["entra"].pop("client_secret", None)
        data["entra"]["certificate"] = {"private_key": f"file:{key_path}", "thumbprint": info["thumbprint"]}
        data["superoffice"]["private_key"] = f"file:{pem}"
        config = tenant.config.with_name("setup-made.yaml")  # beside it: its relative paths still resolve
        config.write_text(yaml.safe_dump(data))
        proc = scimflow("plan", "--config", str(config), "--out", str(tmp_path / "plan"))
        assert proc.returncode == 2, proc.stdout + proc.stderr  # both logins worked: the plan has rows
    finally:
        stop_tenant(tenant)


def test_setup_refuses_bad_keys_and_never_follows_a_symlink(tmp_path: Path) -> None:
    """A broken XML key is refused naming the file and tag; an existing file is kept; a symlink is replaced,
    never written through."""
    bad = tmp_path / "bad.xml"
    bad.write_text("<RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue>")
    proc = scimflow("setup", "superoffice-key", str(bad), "--out", str(tmp_path / "x.pem"))
    assert proc.returncode == 1 and str(bad) in proc.stderr and "<Exponent>" in proc.stderr
    assert not (tmp_path / "x.pem").exists()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = tmp_path / "good.xml"
    good.write_text(_rsa_xml(key))
    existing = tmp_path / "existing.pem"
    existing.write_text("keep me")
    proc = scimflow("setup", "superoffice-key", str(good), "--out", str(existing))
    assert proc.returncode == 1 and "--force" in proc.stderr and existing.read_text() == "keep me"

    victim = tmp_path / "victim.txt"
    victim.write_text("not a key")
    link = tmp_path / "link.pem"
    link.symlink_to(victim)
    proc = scimflow("setup", "superoffice-key", str(good), "--out", str(link), "--force")
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "not a key"  # the symlink's target was not written
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600


def test_setup_system_user_token_reads_the_claim_from_the_token_answer(tmp_path: Path) -> None:
    """`setup system-user-token` prints the system_token claim of the id_token in the token endpoint's answer."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"http://schemes.superoffice.net/identity/system_token": "scimflow-AbC123", "sub": "x"}
    id_token = jwt.encode(claims, key, algorithm="RS256")
    answer = json.dumps({"access_token": "at", "id_token": id_token, "token_type": "Bearer"})
    proc = scimflow("setup", "system-user-token", stdin=answer)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "scimflow-AbC123"
    out = tmp_path / "token.txt"
    proc = scimflow("setup", "system-user-token", "--out", str(out), stdin=id_token)
    assert proc.returncode == 0 and out.read_text().strip() == "scimflow-AbC123"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "scimflow-AbC123" not in proc.stdout
    err = scimflow("setup", "system-user-token", stdin=json.dumps({"error": "invalid_grant"}))
    assert err.returncode == 1 and "invalid_grant" in err.stderr
