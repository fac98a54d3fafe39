"""The plan store: a run's plan files copied where they outlive the worker (a folder or an fsspec URL)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest

from scimflow.config import ConfigError, parse_config
from scimflow.files import write_private
from scimflow.plan_store import PlanStoreError, location, store_plan

BASE: dict[str, Any] = {
    "entra": {"tenant_id": "contoso.onmicrosoft.com", "client_id": "app", "client_secret": "env:ENTRA_SECRET"},
    "superoffice": {
        "webapi_url": "https://online.superoffice.com/Cust12345",
        "login_url": "https://online.superoffice.com/login",
        "context_identifier": "Cust12345",
        "client_secret": "env:SO_SECRET",
        "system_user_token": "env:SO_TOKEN",
        "private_key": "env:SO_KEY",
    },
    "tenant": "contoso",
}


def _plan_dir(root: Path) -> Path:
    out = root / "out" / "20261203T010000Z-a1b2c3"
    write_private(out / "plan.jsonl", '{"action":"retire","key":"kari.nordmann@contoso.com"}\n')
    write_private(out / "summary.json", json.dumps({"retire": 1}))
    write_private(out / "plan.parquet", b"PAR1 not really")
    return out


def test_the_default_store_is_a_private_folder_beside_the_config(tmp_path: Path) -> None:
    """By default the files go to .scimflow/plans/<tenant>/<run> beside the config: same bytes, 0600 in 0700."""
    config = parse_config(BASE, base=tmp_path)
    out = _plan_dir(tmp_path)
    stored = store_plan(config, out)
    dest = tmp_path / ".scimflow" / "plans" / "contoso" / out.name
    assert stored.url == dest.as_uri() == location(config, out)
    assert stored.files == ("plan.jsonl", "summary.json", "plan.parquet")
    for name in stored.files:
        assert (dest / name).read_bytes() == (out / name).read_bytes()
        assert stat.S_IMODE(os.stat(dest / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700


def test_a_url_store_writes_through_fsspec(tmp_path: Path) -> None:
    """A memory:// store (fsspec's in-memory filesystem) holds the same plan.jsonl, hash and all."""
    root = f"memory://plans-{uuid.uuid4().hex[:8]}"
    config = parse_config({**BASE, "plan_store": root}, base=tmp_path)
    out = _plan_dir(tmp_path)
    stored = store_plan(config, out)
    assert stored.url == f"{root}/contoso/{out.name}"
    fs, path = fsspec.core.url_to_fs(stored.url)
    data = fs.cat_file(f"{path}/plan.jsonl")
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256((out / "plan.jsonl").read_bytes()).hexdigest()


def test_a_store_whose_filesystem_is_unknown_fails_naming_the_key(tmp_path: Path) -> None:
    """An unknown URL scheme is an error naming plan_store and the location, not a silent skip."""
    config = parse_config({**BASE, "plan_store": "nosuchfs://bucket/plans"}, base=tmp_path)
    with pytest.raises(PlanStoreError, match=r"plan_store: .*nosuchfs://bucket/plans/contoso/"):
        store_plan(config, _plan_dir(tmp_path))


def test_a_symlinked_tenant_folder_is_refused(tmp_path: Path) -> None:
    """A symlink planted as the tenant's folder in a shared store is refused, nothing written through it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "contoso").symlink_to(elsewhere)
    config = parse_config({**BASE, "plan_store": "shared"}, base=tmp_path)
    with pytest.raises(PlanStoreError, match="symlink"):
        store_plan(config, _plan_dir(tmp_path))
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "value", ["s3://AKIA:secret@bucket/plans", "az://container/plans?sig=abc", "   "], ids=["creds", "query", "blank"]
)
def test_a_url_carrying_credentials_is_refused_by_the_config(tmp_path: Path, value: str) -> None:
    """Credentials or a query in plan_store, or an empty value, fail config validation naming the key."""
    with pytest.raises(ConfigError, match=r"plan_store: ") as err:
        parse_config({**BASE, "plan_store": value}, base=tmp_path)
    assert "secret" not in str(err.value) and "sig=abc" not in str(err.value)


def test_a_file_url_is_a_private_folder_store(tmp_path: Path) -> None:
    """plan_store: file:///… is kept as a folder: the same owner-only files as a plain path."""
    root = tmp_path / "shared plans"
    config = parse_config({**BASE, "plan_store": root.as_uri()}, base=tmp_path)
    out = _plan_dir(tmp_path)
    stored = store_plan(config, out)
    dest = root / "contoso" / out.name
    assert stored.url == dest.as_uri()
    assert stat.S_IMODE(os.stat(dest / "plan.jsonl").st_mode) == 0o600


def test_the_grace_cost_and_rules_files_travel_with_the_plan(tmp_path: Path) -> None:
    """pending.jsonl, cost.json and the rules-change pair are stored with the plan, so undo, the pending dates
    and the rules diff's old copy outlive the worker too."""
    config = parse_config(BASE, base=tmp_path)
    out = _plan_dir(tmp_path)
    extra = ("pending.jsonl", "cost.json", "rules-change.json", "rules-last-applied.yaml")
    for name in extra:
        write_private(out / name, f"{name}\n")
    stored = store_plan(config, out)
    dest = tmp_path / ".scimflow" / "plans" / "contoso" / out.name
    assert set(extra) <= set(stored.files)
    for name in extra:
        assert (dest / name).read_text() == f"{name}\n"
