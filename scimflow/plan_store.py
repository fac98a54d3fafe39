"""The plan store: a copy of each run's plan files where they outlive the worker (``plan_store`` in the config).

A run writes its plan files to ``<out_dir>/<run folder>/`` on the worker (what is applied, hash-checked).
:func:`store_plan` copies them to ``<plan_store>/<tenant>/<run folder>/``, so an approver, an auditor or
``scimflow apply`` on another machine reads the same files after a container worker is gone:

- a folder (the default, ``.scimflow/plans`` beside the config, or a shared mount such as ``/srv/plans``):
  folders created 0700, files written 0600 without following a symlink (:func:`scimflow.files.write_private`);
- a URL (``s3://``, ``gs://``, ``az://``, ``memory://``…; a ``file://`` URL is a folder): written through
  fsspec (installed with Prefect), whose filesystem for the scheme must be installed (``s3fs`` for
  ``s3://``, …) and whose credentials come from its own configuration (environment, instance role), never
  from the URL.

The copy's ``plan.jsonl`` is read back and hashed: a store that changed the bytes is an error, not a link.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from scimflow.errors import ScimflowError
from scimflow.files import private_folder, write_private

if TYPE_CHECKING:
    from scimflow.config import Config

__all__ = ["PLAN_FILES", "PlanStoreError", "StoredPlan", "is_url", "location", "store_plan"]

#: The files of a plan folder that are copied (those present: ``links.jsonl`` is absent in old plans,
#: ``pending.jsonl`` without a grace period, ``cost.json`` when no cost was estimated, the two rules files
#: when the rules did not change since the last applied run).
PLAN_FILES = (
    "plan.jsonl",
    "summary.json",
    "plan.parquet",
    "links.jsonl",
    "pending.jsonl",
    "cost.json",
    "rules-change.json",
    "rules-last-applied.yaml",
)


class PlanStoreError(ScimflowError, OSError):
    """The plan files could not be stored where ``plan_store`` says; the message names it and the cause."""


@dataclass(frozen=True)
class StoredPlan:
    """Where one run's plan files were stored: ``url`` (``file://`` for a folder) and the file names."""

    url: str
    files: tuple[str, ...]


def is_url(value: str) -> bool:
    """Whether a ``plan_store`` value is a URL (``scheme://…``, not ``file://``) rather than a folder."""
    scheme = urlsplit(value).scheme
    return "://" in value and len(scheme) > 1 and scheme != "file"  # a Windows drive letter is no scheme


def _root(config: Config) -> Path:
    """A folder store's root: the path, or a ``file://`` URL's path (both kept owner-only)."""
    value = config.plan_store
    return Path(url2pathname(urlsplit(value).path)) if value.startswith("file://") else Path(value)


def location(config: Config, plan_dir: Path | str) -> str:
    """Where :func:`store_plan` puts ``plan_dir``'s files: ``<plan_store>/<tenant>/<run folder>`` (a URL for a
    URL store, ``file://`` + the absolute path for a folder)."""
    base = config.plan_store.rstrip("/")
    if is_url(base):
        return f"{base}/{config.tenant_key}/{Path(plan_dir).name}"
    return _folder(config, plan_dir).as_uri()


def _folder(config: Config, plan_dir: Path | str) -> Path:
    return (_root(config) / config.tenant_key / Path(plan_dir).name).absolute()


def store_plan(config: Config, plan_dir: Path | str) -> StoredPlan:
    """Copy the plan files of ``plan_dir`` to :func:`location`; the copy's plan hash is checked.

    Raises:
        PlanStoreError: the store refused a write, its filesystem is not installed, or the stored
            ``plan.jsonl`` differs from the local one. The message names ``plan_store`` and the location.
    """
    src = Path(plan_dir)
    names = tuple(n for n in PLAN_FILES if (src / n).is_file())
    if "plan.jsonl" not in names:
        msg = f"plan_store: {src} holds no plan.jsonl to store"
        raise PlanStoreError(msg)
    dest = location(config, src)
    try:
        if is_url(config.plan_store):
            _put_fsspec(src, names, dest)
        else:
            _put_folder(src, names, _folder(config, src))
    except PlanStoreError:
        raise
    except (OSError, ImportError, ValueError) as exc:  # fsspec: unknown protocol, missing implementation
        msg = f"plan_store: the plan files could not be stored at {dest}: {type(exc).__name__}: {exc}"
        raise PlanStoreError(msg) from None
    return StoredPlan(dest, names)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(dest: str, local: bytes, stored: bytes) -> None:
    if _digest(local) != _digest(stored):
        msg = f"plan_store: the stored {dest}/plan.jsonl differs from the plan written (hash mismatch)"
        raise PlanStoreError(msg)


def _put_folder(src: Path, names: tuple[str, ...], dest: Path) -> None:
    """A folder store: ``<root>/<tenant>/<run>`` owner-only (the root may be a shared mount: left as it is)."""
    private_folder(dest.parent)
    private_folder(dest)
    for name in names:
        write_private(dest / name, (src / name).read_bytes(), check_folder=False)  # checked just above
    _check(str(dest), (src / "plan.jsonl").read_bytes(), (dest / "plan.jsonl").read_bytes())


def _put_fsspec(src: Path, names: tuple[str, ...], dest: str) -> None:
    """A URL store, through fsspec (the scheme's filesystem, its credentials from its own configuration)."""
    import fsspec  # comes with Prefect; imported only for a URL store

    fs: Any
    fs, path = fsspec.core.url_to_fs(dest)
    fs.makedirs(path, exist_ok=True)
    for name in names:
        fs.pipe_file(f"{path}/{name}", (src / name).read_bytes())
    _check(dest, (src / "plan.jsonl").read_bytes(), fs.cat_file(f"{path}/plan.jsonl"))
