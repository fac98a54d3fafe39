"""The approvals part of the state store: each approval form recorded against its plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._base import StateError, StoreBase, aware, utc_now

__all__ = ["ApprovalsPart"]


class ApprovalsPart(StoreBase):
    """Approvals: record a form (approve, comment, held classes and users), list a plan's approvals."""

    def record_approval(
        self, run_id: str | None, plan_hash: str, approver: str | None, form: Mapping[str, Any]
    ) -> None:
        """Record an approval form (``approve``, ``comment``, ``hold_actions``, ``hold_users``) for a plan."""
        hold_actions = list(form.get("hold_actions") or [])
        hold_users = list(form.get("hold_users") or [])
        if not all(isinstance(x, str) for x in [*hold_actions, *hold_users]):
            msg = "record_approval: hold_actions and hold_users must be lists of strings"
            raise StateError(msg)
        with self._tx() as conn:
            conn.execute(
                sa.insert(t.approvals).values(
                    run_id=run_id,
                    plan_hash=plan_hash,
                    approver=approver,
                    approve=bool(form.get("approve", False)),
                    comment=form.get("comment") or "",
                    hold_actions=hold_actions,
                    hold_users=hold_users,
                    at=utc_now(),
                )
            )

    def approvals(self, plan_hash: str) -> list[dict[str, Any]]:
        """Every approval recorded for a plan, oldest first."""
        a = t.approvals
        with self._tx() as conn:
            rows = conn.execute(sa.select(a).where(a.c.plan_hash == plan_hash).order_by(a.c.id)).mappings().all()
        return [{**dict(r), "at": aware(r["at"])} for r in rows]
