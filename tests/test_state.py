"""The state store against a real SQLite file and, where the binaries exist, a throw-away PostgreSQL."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from scimflow.state import HEAD_REVISION, LinkImportError, StateError, StateStore
from scimflow.state import _tables as tables


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file in a folder that does not exist yet, or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/state.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str):
    """An opened (migrated) store, closed after the test."""
    s = StateStore(store_url)
    yield s
    s.close()


def test_head_revision_constant_matches_the_scripts() -> None:
    """HEAD_REVISION (used to skip Alembic on an up-to-date database) is the scripts' head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(tables.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrates_from_empty(store: StateStore) -> None:
    """Opening an empty database migrates it to head, and the result matches the table metadata."""
    assert store.schema_revision() == HEAD_REVISION
    with store.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert {"links", "runs", "journal", "approvals", "baseline", "alembic_version"} <= names
        diffs = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert diffs == []


def test_reopen_keeps_data_and_does_not_remigrate(store_url: str) -> None:
    """A second open finds the schema at head and everything written before."""
    with StateStore(store_url) as s:
        s.upsert_links([("e1", 11)])
        rid = s.start_run("auto", source_users=4)
        s.finish_run(rid, "completed", {"create": 1})
    with StateStore(store_url) as s:
        assert s.schema_revision() == HEAD_REVISION
        assert s.export_links() == [{"entra_id": "e1", "associate_id": 11}]
        run = s.run(rid)
        assert run is not None
        assert run["status"] == "completed"
        assert run["summary"] == {"create": 1}
        assert run["finished_at"].tzinfo is not None


def test_sqlite_file_and_folder_are_owner_only(tmp_path: Path) -> None:
    """The SQLite file is 0600 and the folder it needed 0700, WAL files included."""
    db = tmp_path / "a" / "b" / "state.db"
    with StateStore(f"sqlite:///{db}") as s:
        s.upsert_links([("e1", 1)])
        for p in db.parent.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.parent.parent.stat().st_mode) == 0o700


def test_sqlite_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    """An existing state file that others could read is made owner-only when opened."""
    db = tmp_path / "state.db"
    db.touch()
    os.chmod(db, 0o644)
    StateStore(f"sqlite:///{db}").close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_links_frame_shape_and_one_to_one(store: StateStore) -> None:
    """links() is typed, and a new pair replaces the old link of either side."""
    empty = store.links()
    assert empty.schema == pl.Schema({"entra_id": pl.String, "associate_id": pl.Int64})
    assert store.upsert_links([("e1", 1), ("e2", 2)]) == 2
    assert store.upsert_links([("e1", 1)]) == 0
    assert store.upsert_links([("e3", 2), ("e1", 5)]) == 2
    assert store.links().to_dicts() == [
        {"entra_id": "e1", "associate_id": 5},
        {"entra_id": "e3", "associate_id": 2},
    ]
    with pytest.raises(StateError, match="two partner users"):
        store.upsert_links([("e9", 7), ("e9", 8)])


def test_import_export_round_trip(store: StateStore) -> None:
    """Imported links come back from export, sorted by entra_id."""
    items = [{"entra_id": "b", "associate_id": 2}, {"entra_id": "a", "associate_id": 1, "note": "ignored"}]
    assert store.import_links(items) == 2
    assert store.export_links() == [{"entra_id": "a", "associate_id": 1}, {"entra_id": "b", "associate_id": 2}]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{"entra_id": "a", "associate_id": 1}, {"entra_id": "", "associate_id": 2}], "item 1: entra_id"),
        ([{"entra_id": "a", "associate_id": 0}], "item 0: associate_id must be a positive integer"),
        ([{"entra_id": "a", "associate_id": "3"}], "item 0: associate_id"),
        ([{"entra_id": "a", "associate_id": True}], "item 0: associate_id"),
        ([{"associate_id": 3}], "item 0: entra_id must be a non-empty string (got missing)"),
        ([{"entra_id": "a", "associate_id": 1}, ["a", 1]], "item 1: expected an object"),
        ([{"entra_id": "a", "associate_id": 1}, {"entra_id": "a", "associate_id": 2}], "item 1: entra_id a"),
        ([{"entra_id": "a", "associate_id": 1}, {"entra_id": "b", "associate_id": 1}], "item 1: associate_id 1"),
        ({"entra_id": "a", "associate_id": 1}, "expected a JSON list"),
    ],
    ids=["empty-id", "zero", "string-id", "bool", "missing", "not-object", "dup-entra", "dup-assoc", "not-list"],
)
def test_import_errors_name_the_item_and_write_nothing(store: StateStore, items: object, expected: str) -> None:
    """A bad item refuses the whole import, and the error names the item by index."""
    with pytest.raises(LinkImportError) as info:
        store.import_links(items)
    assert expected in str(info.value)
    assert store.export_links() == []


def test_runs_and_last_successful_source_count(store: StateStore) -> None:
    """Only completed or partial runs count as the base for the source-drop guardrail."""
    assert store.last_successful_source_count() is None
    r1 = store.start_run("auto", plan_hash="h1")
    store.finish_run(r1, "completed", {"create": 3}, source_users=100)
    r2 = store.start_run("auto")
    store.finish_run(r2, "source_unhealthy", {}, source_users=10)
    assert store.last_successful_source_count() == 100
    r3 = store.start_run("approve", source_users=90)
    store.finish_run(r3, "partial", {"update": 1})
    assert store.last_successful_source_count() == 90
    with pytest.raises(StateError, match="status"):
        store.finish_run(r3, "great")
    with pytest.raises(StateError, match="no run"):
        store.finish_run("nope", "failed")


def test_journal_rerun_sees_what_is_done(store: StateStore) -> None:
    """journal_begin keeps rows a plan already has, so a rerun knows what is applied."""
    rows = pl.DataFrame(
        {"key": ["a", "b"], "action": ["create", "update"], "entra_id": ["e1", "e2"], "associate_id": [None, 7]}
    )
    assert store.journal_begin("h", rows, run_id="r1") == 2
    store.journal_mark("h", "a", "create", "applied", associate_id=42)
    assert store.journal_begin("h", rows, run_id="r2") == 0
    assert store.journal_status("h") == {("a", "create"): "applied", ("b", "update"): "pending"}
    store.journal_mark("h", "a", "create", "verified")
    frame = store.journal("h")
    assert frame.filter(pl.col("key") == "a").row(0, named=True)["associate_id"] == "42"
    assert store.journal_status("other") == {}
    with pytest.raises(StateError, match="status"):
        store.journal_mark("h", "a", "create", "done")


def test_concurrent_journal_marks_from_8_threads(store: StateStore) -> None:
    """Eight threads marking rows at once lose no write and raise no 'database is locked'."""
    keys = [f"user{i}@contoso.com" for i in range(400)]
    store.journal_begin("h", [{"key": k, "action": "update"} for k in keys])
    errors: list[BaseException] = []

    def work(part: list[str]) -> None:
        try:
            for k in part:
                store.journal_mark("h", k, "update", "applied", detail=f"ok {k}")
        except BaseException as exc:  # surface in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(keys[i::8],)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert set(store.journal_status("h").values()) == {"applied"}


def test_approvals_are_recorded(store: StateStore) -> None:
    """An approval form is stored with its holds and the plan hash."""
    store.record_approval(
        "r1", "h", "kari@contoso.com", {"approve": True, "comment": "ok", "hold_actions": ["retire"], "hold_users": []}
    )
    (a,) = store.approvals("h")
    assert (a["approve"], a["comment"], a["hold_actions"], a["approver"]) == (
        True,
        "ok",
        ["retire"],
        "kari@contoso.com",
    )


def test_baseline_round_trip(store: StateStore) -> None:
    """A saved Entra frame comes back identical, with its delta links, and a save replaces it."""
    assert store.load_baseline("t") is None
    frame = pl.DataFrame({"id": ["1", "2"], "groups": [["SO Sales"], []], "accountEnabled": [True, None]})
    store.save_baseline("t", frame, "https://g/delta?u", "https://g/delta?g")
    b = store.load_baseline("t")
    assert b is not None
    assert b.frame.equals(frame)
    assert (b.users_link, b.groups_link, b.user_count) == ("https://g/delta?u", "https://g/delta?g", 2)
    store.save_baseline("t", frame.head(1), "u2", None)
    b2 = store.load_baseline("t")
    assert b2 is not None
    assert (b2.user_count, b2.users_link, b2.groups_link) == (1, "u2", None)
    assert store.load_baseline("other") is None


def test_unreachable_database_is_a_state_error(tmp_path: Path) -> None:
    """A URL that cannot be opened fails with StateError naming the store."""
    with pytest.raises(StateError, match="state store"):
        StateStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StateError, match="not a database URL"):
        StateStore("not a url")


def test_journal_seen_finds_started_changes_across_plans(store):
    """journal_seen names the rows of an action that any earlier plan journalled, by key or Entra id."""
    store.journal_begin("plan-a", [{"key": "a@x.com", "entra_id": "e1", "action": "create"}])
    store.journal_begin("plan-b", [{"key": "b@x.com", "entra_id": "e2", "action": "update"}])
    assert store.journal_seen("create", ["a@x.com"]) == {("a@x.com", "e1")}
    assert store.journal_seen("create", ["renamed@x.com"], ["e1"]) == {("a@x.com", "e1")}
    assert store.journal_seen("create", ["b@x.com"], ["e2"]) == set()
