"""A SCIM inverse plan's group rows: the computed-group membership changes its user rows make.

As in a SCIM plan (ARCHITECTURE.md "SCIM target"; :mod:`scimflow.plan`), they are rows of their own in
``plan.jsonl`` (``update_group``, or ``create_group`` for a group not found), keyed by the group's name,
with ``members_added`` / ``members_removed`` listing user keys, and counted in ``summary.json``. They are
never applied on their own: the SCIM writer moves each user's memberships with its row. The run's own
group rows are not reversed as such (computed groups are never deleted).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from scimflow.computed_groups import groups_for, membership_delta
from scimflow.plan import group_change_rows
from scimflow.rules import ELEMENTS

__all__ = ["group_names", "group_rows"]


def _element_changes(row: Mapping[str, Any]) -> dict[str, Any]:
    changes: Mapping[str, Any] = json.loads(row["changes"]) if row.get("changes") else {}
    return {e: changes[e] for e in ELEMENTS if e in changes}


def group_names(rows: Sequence[Mapping[str, Any]], prefix: str) -> set[str]:
    """Every computed group the element changes of ``rows`` (``changes`` as JSON text) name, before or after."""
    names: set[str] = set()
    for row in rows:
        for element, change in _element_changes(row).items():
            names |= groups_for(prefix, {element: change.get("to")}) | groups_for(prefix, {element: change.get("from")})
    return names


def group_rows(
    rows: Sequence[Mapping[str, Any]],
    current: Mapping[str, Sequence[str]],
    existing: Mapping[str, str],
    prefix: str,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The group rows following from the user ``rows`` (``update``/``reactivate`` move memberships; a retire
    keeps them), and their counts. ``current``: each partner id's computed groups now; ``existing``: group
    name → SCIM id of the groups that exist."""
    added: dict[str, set[str]] = defaultdict(set)
    removed: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.get("action") not in ("create", "update", "reactivate"):
            continue
        changed = {e: c.get("to") for e, c in _element_changes(row).items()}
        if not changed:
            continue
        partner = row.get("associate_id")
        add, remove = membership_delta(prefix, current.get(str(partner), ()) if partner is not None else (), changed)
        for name in add:
            added[name].add(str(row["key"]))
        for name in remove:
            removed[name].add(str(row["key"]))
    return group_change_rows(added, removed, existing)
