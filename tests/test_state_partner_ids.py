"""Partner ids in the state store: strings (SuperOffice AssociateIds and SCIM ids both fit), migrated from 0001."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from scimflow.state import HEAD_REVISION, StateError, StateStore
from scimflow.state import _tables as tables


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("postgres_url"))


def _at_0001(url: str) -> None:
    """Migrate an empty database to revision 0001 (integer partner ids) and store a link and a journal row."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(tables.__file__).parent / "migrations"))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                sa.text("INSERT INTO links (entra_id, associate_id, created_at, updated_at) VALUES ('e1', 11, :t, :t)"),
                {"t": "2026-12-01 00:00:00+00:00"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO journal (plan_hash, key, action, status, associate_id, at)"
                    " VALUES ('h', 'a@x', 'create', 'applied', 42, :t)"
                ),
                {"t": "2026-12-01 00:00:00+00:00"},
            )
    finally:
        engine.dispose()


def test_0001_database_is_migrated_keeping_integer_ids(store_url: str) -> None:
    """A 0001 database opens at head with its integer ids kept: links frame Int64, export ints, journal text."""
    _at_0001(store_url)
    with StateStore(store_url) as store:
        assert store.schema_revision() == HEAD_REVISION
        assert store.links().to_dicts() == [{"entra_id": "e1", "associate_id": 11}]
        assert store.export_links() == [{"entra_id": "e1", "associate_id": 11}]
        assert store.journal("h")["associate_id"].to_list() == ["42"]
        store.upsert_links([("e2", "12")])
        assert store.links()["associate_id"].to_list() == [11, 12]


def test_scim_ids_are_stored_as_strings(store_url: str) -> None:
    """SCIM ids (strings) are stored in links and journal; the Int64 view refuses them with a clear error."""
    scim_id = "2819c223-7f76-453a-919d-413861904646"
    with StateStore(store_url) as store:
        store.upsert_links([("e1", scim_id)])
        store.journal_mark("h", "a@x", "create", "applied", associate_id=scim_id)
        assert store.links(string_ids=True).to_dicts() == [{"entra_id": "e1", "associate_id": scim_id}]
        assert store.links(string_ids=True).schema["associate_id"] == pl.String
        assert store.export_links() == [{"entra_id": "e1", "associate_id": scim_id}]
        assert store.journal("h")["associate_id"].to_list() == [scim_id]
        with pytest.raises(StateError, match="not all integers"):
            store.links()
