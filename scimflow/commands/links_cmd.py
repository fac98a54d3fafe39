"""``scimflow links export`` / ``links import``: the state store's Entra-to-target links as JSON.

The format (contract) is a JSON list of ``{"entra_id": str, "associate_id": int}``; for a ``target: scim``
config ``associate_id`` is the SCIM id, a string (export writes every id as a string, import takes
strings). Export prints it on stdout, import reads it from a file (for migrating from another provisioning
tool, or restoring state).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scimflow.config import ConfigError, load_config
from scimflow.state import LinkImportError, StateError, StateStore

__all__ = ["export_links", "import_links"]


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


def export_links(config: Path) -> int:
    """Print every link as a JSON list on stdout; exit 0, or 1 when the config or store is unusable."""
    try:
        cfg = load_config(config)
        with StateStore(cfg.state_url) as store:
            items = store.export_links(string_ids=cfg.target == "scim")
    except (ConfigError, StateError) as exc:
        _err(f"error: {exc}")
        return 1
    sys.stdout.write(json.dumps(items, indent=2) + "\n")
    sys.stdout.flush()
    return 0


def import_links(config: Path, file: Path) -> int:
    """Import links from ``file`` (the export format), all or nothing; exit 0, or 1 naming the file and item."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        _err(f"error: {file}: cannot read it: {exc.strerror}")
        return 1
    except UnicodeDecodeError:
        _err(f"error: {file}: not UTF-8 text")
        return 1
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        _err(f"error: {file}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return 1
    try:
        cfg = load_config(config)
        with StateStore(cfg.state_url) as store:
            changed = store.import_links(items, string_ids=cfg.target == "scim")
    except LinkImportError as exc:
        _err(f"error: {file}: " + "\n  ".join(["links import refused, nothing was written:", *exc.errors]))
        return 1
    except (ConfigError, StateError) as exc:
        _err(f"error: {exc}")
        return 1
    sys.stdout.write(f"imported {len(items)} links from {file} ({changed} new or changed)\n")
    return 0
