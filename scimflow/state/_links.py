"""The links part of the state store: which Entra user is which partner user, one to one.

Partner ids are stored as strings (a SuperOffice AssociateId and a SCIM ``id`` both fit); the
``links export`` / ``links import`` format lives here too.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scimflow.state import _tables as t
from scimflow.state._base import StateError, StoreBase, chunks, partner_id, utc_now

__all__ = ["MAX_SCIM_ID", "LinkImportError", "LinksPart"]


class LinkImportError(StateError):
    """A links import was refused; nothing was written. ``errors`` lists each problem, naming the item."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:20]
        more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        super().__init__("links import refused, nothing was written:\n  " + "\n  ".join(shown) + more)


class LinksPart(StoreBase):
    """Links: read them as a frame, upsert pairs, export and import them."""

    def links(self, *, string_ids: bool = False) -> pl.DataFrame:
        """Every stored link as a frame: ``entra_id`` (String), ``associate_id`` (by entra_id).

        Partner ids are stored as strings (a SuperOffice AssociateId and a SCIM ``id`` both fit);
        ``associate_id`` is Int64 (SuperOffice's ids) unless ``string_ids`` (String, e.g. SCIM ids).

        Raises:
            StateError: ``string_ids`` is false and a stored partner id is not an integer.
        """
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(t.links.c.entra_id, t.links.c.associate_id).order_by(t.links.c.entra_id)
            ).all()
        frame = pl.DataFrame(
            {"entra_id": [r[0] for r in rows], "associate_id": [r[1] for r in rows]},
            schema={"entra_id": pl.String, "associate_id": pl.String},
        )
        if string_ids:
            return frame
        try:
            return frame.with_columns(pl.col("associate_id").cast(pl.Int64))
        except pl.exceptions.InvalidOperationError:
            msg = "links: the stored partner ids are not all integers (links of a SCIM target?): read them as strings"
            raise StateError(msg) from None

    def upsert_links(self, pairs: Iterable[tuple[str, str | int]]) -> int:
        """Store ``(entra_id, associate_id)`` pairs; return how many were new or changed.

        A pair replaces any link of either its Entra user or its partner user (a link is one-to-one; the
        newest word wins). Pairs that are already stored are left as they are. Partner ids are stored as
        strings (an integer is stored as its decimal digits).

        Raises:
            StateError: the pairs contradict each other (one id linked to two partners).
        """
        clean = self._clean_pairs(pairs)
        if not clean:
            return 0
        with self._tx() as conn:
            return self._upsert_links(conn, clean)

    @staticmethod
    def _clean_pairs(pairs: Iterable[tuple[str, str | int]]) -> dict[str, str]:
        by_entra: dict[str, str] = {}
        by_assoc: dict[str, str] = {}
        for entra_id, associate_id in pairs:
            eid, aid = str(entra_id).strip(), partner_id(associate_id)
            if aid is None:
                msg = f"links: Entra user {eid} given an empty partner id"
                raise StateError(msg)
            if by_entra.setdefault(eid, aid) != aid:
                msg = f"links: Entra user {eid} given two partner users ({by_entra[eid]} and {aid})"
                raise StateError(msg)
            if by_assoc.setdefault(aid, eid) != eid:
                msg = f"links: partner user {aid} given two Entra users ({by_assoc[aid]} and {eid})"
                raise StateError(msg)
        return by_entra

    def _upsert_links(self, conn: Connection, pairs: dict[str, str]) -> int:
        lk = t.links
        existing: dict[str, tuple[str, dt.datetime]] = {}
        owner_of: dict[str, str] = {}
        for chunk in chunks(list(pairs)):
            for eid, aid, created in conn.execute(
                sa.select(lk.c.entra_id, lk.c.associate_id, lk.c.created_at).where(lk.c.entra_id.in_(chunk))
            ):
                existing[eid] = (aid, created)
        for chunk in chunks(list(pairs.values())):
            for eid, aid in conn.execute(
                sa.select(lk.c.entra_id, lk.c.associate_id).where(lk.c.associate_id.in_(chunk))
            ):
                owner_of[aid] = eid
        changed = {eid: aid for eid, aid in pairs.items() if existing.get(eid, (None,))[0] != aid}
        if not changed:
            return 0
        # Free both sides of every changed pair: its Entra user's old link and its associate's old owner.
        stale_entra = list(changed)
        stale_entra += [owner_of[aid] for aid in changed.values() if aid in owner_of and owner_of[aid] not in changed]
        for chunk in chunks(stale_entra):
            conn.execute(sa.delete(lk).where(lk.c.entra_id.in_(chunk)))
        now = utc_now()
        conn.execute(
            sa.insert(lk),
            [
                {
                    "entra_id": eid,
                    "associate_id": aid,
                    "created_at": existing[eid][1] if eid in existing else now,
                    "updated_at": now,
                }
                for eid, aid in changed.items()
            ],
        )
        return len(changed)

    def export_links(self, *, string_ids: bool = False) -> list[dict[str, Any]]:
        """Every link as ``{"entra_id", "associate_id"}``, sorted by entra_id (the ``links export`` format).

        ``associate_id`` is an integer where the stored id is one (SuperOffice), else the string; with
        ``string_ids`` (a SCIM target) always the string, so an id such as ``"0123"`` comes back as it was.
        """
        return [
            {"entra_id": e, "associate_id": a if string_ids or not a.isdecimal() else int(a)}
            for e, a in self.links(string_ids=True).iter_rows()
        ]

    def import_links(self, items: Any, *, string_ids: bool = False) -> int:
        """Validate and store links in the ``links export`` format, all or nothing; return how many changed.

        Each item must be an object with ``entra_id`` (a non-empty string) and ``associate_id``: a positive
        integer (a SuperOffice AssociateId), or with ``string_ids`` (a SCIM target) a SCIM id: a non-empty
        string of at most :data:`MAX_SCIM_ID` characters without control characters (a positive integer
        is taken as its digits too). Other keys are ignored. One Entra user or partner given two partners
        is an error too.

        Raises:
            LinkImportError: any item is invalid; its message names every bad item by index.
        """
        if not isinstance(items, list):
            raise LinkImportError(
                [f"expected a JSON list of {{'entra_id', 'associate_id'}} objects, got {_kind(items)}"]
            )
        errors: list[str] = []
        pairs: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        owner: dict[str, tuple[str, int]] = {}
        for i, item in enumerate(items):
            where = f"item {i}"
            if not isinstance(item, Mapping):
                errors.append(f"{where}: expected an object with entra_id and associate_id, got {_kind(item)}")
                continue
            eid = item.get("entra_id")
            aid = item.get("associate_id")
            bad = False
            if not isinstance(eid, str) or not eid.strip():
                got = "missing" if "entra_id" not in item else repr(eid)
                errors.append(f"{where}: entra_id must be a non-empty string (got {got})")
                bad = True
            problem = _scim_id_problem(aid) if string_ids else _associate_id_problem(aid)
            if problem is not None:
                got = "missing" if "associate_id" not in item else _shown(aid)
                errors.append(f"{where}: associate_id {problem} (got {got})")
                bad = True
            if bad:
                continue
            assert isinstance(eid, str)
            eid = eid.strip()
            aid = str(aid).strip()
            if eid in pairs and pairs[eid] != str(aid):
                errors.append(
                    f"{where}: entra_id {eid} is already linked to associate_id {pairs[eid]} by item {first_seen[eid]}"
                )
                continue
            if aid in owner and owner[aid][0] != eid:
                errors.append(
                    f"{where}: associate_id {aid} is already linked to entra_id {owner[aid][0]} by item {owner[aid][1]}"
                )
                continue
            pairs[eid] = aid
            first_seen.setdefault(eid, i)
            owner.setdefault(aid, (eid, i))
        if errors:
            raise LinkImportError(errors)
        if not pairs:
            return 0
        with self._tx() as conn:
            return self._upsert_links(conn, pairs)


#: The longest SCIM id ``links import`` takes (RFC 7643 sets no bound; real ones are UUIDs or shorter).
MAX_SCIM_ID = 256


def _associate_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a SuperOffice AssociateId (a positive integer), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return "must be a positive integer"
    return None


def _scim_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a SCIM id (a non-empty string, at most MAX_SCIM_ID characters, no control
    characters; a positive integer counts as its digits), or ``None``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value > 0 else "must be a SCIM id: a non-empty string"
    if not isinstance(value, str) or not value.strip():
        return "must be a SCIM id: a non-empty string"
    if len(value.strip()) > MAX_SCIM_ID:
        return f"must be a SCIM id of at most {MAX_SCIM_ID} characters ({len(value.strip())} given)"
    if any(unicodedata.category(c) == "Cc" for c in value.strip()):
        return "must be a SCIM id without control characters"
    return None


def _shown(value: Any) -> str:
    """``value`` for an error message: its ``repr``, cut short (a bad id may be huge)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
