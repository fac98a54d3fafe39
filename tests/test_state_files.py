"""The SQLite state file is opened safely: no symlink followed, no folder others control."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from scimflow.config import Config
from scimflow.pipeline import open_store
from scimflow.state import StateError, StateStore


def test_a_symlink_planted_as_the_state_file_is_refused_not_followed(tmp_path: Path) -> None:
    """A state.db that is a symlink is refused with a message naming it, and its target is left untouched."""
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a database")
    (folder / "state.db").symlink_to(target)
    with pytest.raises(StateError, match=r"state\.db is a symlink: refused"):
        StateStore(f"sqlite:///{folder}/state.db")
    assert target.read_text() == "not a database"


def test_a_group_writable_state_folder_is_refused(tmp_path: Path) -> None:
    """A state folder group members may write to is refused (they could swap the database)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o770)
    with pytest.raises(StateError, match=r"writable by group or others \(mode 0770\)"):
        StateStore(f"sqlite:///{folder}/state.db")
    assert not (folder / "state.db").exists()


def test_a_symlinked_state_folder_is_refused(tmp_path: Path) -> None:
    """A state folder that is a symlink is refused, naming the real folder."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StateError, match="is a symlink: refused"):
        StateStore(f"sqlite:///{tmp_path}/link/state.db")
    assert list(real.iterdir()) == []


def test_open_store_creates_the_missing_state_folders_owner_only(tmp_path: Path) -> None:
    """pipeline.open_store creates every missing folder of the state file 0700 and the file 0600."""
    db = tmp_path / "a" / "b" / "state.db"
    config = Config.model_construct(state_url=f"sqlite:///{db}")  # open_store reads state_url alone
    with open_store(config) as store:
        assert store.schema_revision() is not None
    for folder in (db.parent, db.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_stores_opened_at_once_on_a_new_folder_all_open(tmp_path: Path) -> None:
    """Eight threads opening the same not-yet-existing state file at once all succeed (folder creation races)."""
    db = tmp_path / "new" / "deeper" / "state.db"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            StateStore(f"sqlite:///{db}").close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
