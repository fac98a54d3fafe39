"""One vocabulary for every stage: plan actions, summary count keys, and how two field values compare.

The planner (vectorised, :func:`changed_expr`), the apply engine and the writers (per value,
:func:`same_value`) decide "is this field different?" the same way, as ARCHITECTURE.md ("Matching and
situations") says: ``user_name`` and ``email`` trimmed and case-insensitively, other strings exactly, lists
as sets; ``""`` counts as null, a null ``secondary_groups`` as no groups, a null ``confidential`` as false.

Trimming strips the Unicode ``White_Space`` characters (what Polars' ``strip_chars`` strips; Python's
``str.strip`` also strips U+001C..U+001F, so :func:`norm` names the set). Lower-casing is Unicode's full
lower-case mapping on both sides (not ``casefold``: ``"ß"`` stays ``"ß"``); Polars' Unicode tables are newer
than Python 3.11's, so the few characters assigned after Unicode 14 may lower-case differently per side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import polars as pl

__all__ = [
    "ACTIONS",
    "CASE_INSENSITIVE",
    "CHANGE_ACTIONS",
    "COUNT_KEYS",
    "GROUP_ACTIONS",
    "GROUP_COUNT_KEYS",
    "RETIRE_CLEARS",
    "ROW_ACTIONS",
    "WHITESPACE",
    "before_retirement",
    "changed_expr",
    "norm",
    "norm_expr",
    "same_value",
]

#: Actions that write to the target system (what a guardrail counts, what the apply stage runs).
CHANGE_ACTIONS: Final[tuple[str, ...]] = ("create", "update", "retire", "reactivate")
#: Actions that get a line in ``plan.jsonl`` (changes, plus the rows a person should look at).
ROW_ACTIONS: Final[tuple[str, ...]] = (*CHANGE_ACTIONS, "quarantine", "conflict")
#: The nine counts of ``summary.json``, in its order: every situation a user can be in.
COUNT_KEYS: Final[tuple[str, ...]] = (*ROW_ACTIONS, "unchanged", "unmanaged", "out_of_scope")
#: Every action the planner decides (the same names as the count keys).
ACTIONS: Final[tuple[str, ...]] = COUNT_KEYS
#: A SCIM target's group rows (computed groups to create or whose members change): in ``plan.jsonl`` and
#: the preview, never applied on their own (they follow their users' rows).
GROUP_ACTIONS: Final[tuple[str, ...]] = ("create_group", "update_group")
#: The counts a SCIM plan adds to ``summary.json``.
GROUP_COUNT_KEYS: Final[tuple[str, ...]] = (*GROUP_ACTIONS, "members_added", "members_removed")

#: What a retirement clears besides ``active`` (SuperOffice's removes the licences). The apply stage keeps
#: their values from just before it in the journal row's detail (:func:`before_retirement`), so that
#: ``scimflow undo`` can give them back.
RETIRE_CLEARS: Final[tuple[str, ...]] = ("user_plan", "confidential")
_BEFORE_RETIREMENT = "before retirement: "


def before_retirement(values: Mapping[str, Any] | str | None) -> str | dict[str, Any] | None:
    """Both ways between a retired user's cleared values and the journal detail that keeps them.

    Given the record read just before the retirement (a mapping): the detail text (``before retirement:
    {"user_plan": ...}``), or ``None`` when it held none of :data:`RETIRE_CLEARS`. Given a journal detail
    (text): the values it keeps, or ``None`` when it keeps none (another detail, or none).
    """
    if values is None:
        return None
    if isinstance(values, str):
        if not values.startswith(_BEFORE_RETIREMENT):
            return None
        try:
            kept = json.loads(values.removeprefix(_BEFORE_RETIREMENT))
        except ValueError:
            return None
        return {k: v for k, v in kept.items() if k in RETIRE_CLEARS} if isinstance(kept, dict) else None
    kept = {f: values.get(f) for f in RETIRE_CLEARS if values.get(f) not in (None, False, "")}
    return _BEFORE_RETIREMENT + json.dumps(kept, sort_keys=True) if kept else None


#: Fields compared (and matched) trimmed and case-insensitively.
CASE_INSENSITIVE: Final[frozenset[str]] = frozenset({"user_name", "email"})
#: Fields holding a list of names, compared as sets (null = empty).
_SET_FIELDS: Final[frozenset[str]] = frozenset({"secondary_groups"})
#: Fields holding a flag where null means false.
_FALSE_WHEN_NULL: Final[frozenset[str]] = frozenset({"confidential"})
#: Fields holding a flag (never compared as text).
_BOOL_FIELDS: Final[frozenset[str]] = frozenset({"confidential", "active"})

#: Unicode ``White_Space``: what trimming removes (the characters Polars' ``strip_chars()`` strips).
WHITESPACE: Final[str] = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_STR_LIST = pl.List(pl.String)


def norm(field: str, value: object) -> object:
    """``value`` of ``field`` as compared: equal results mean "no change".

    Lists (any iterable but text) become a frozenset of their texts; a null ``secondary_groups`` the empty
    set; a null ``confidential`` ``False``; ``user_name`` / ``email`` text is trimmed and lower-cased; any
    text that is (then) empty becomes ``None``; everything else is returned as is.
    """
    if value is None:
        if field in _SET_FIELDS:
            return frozenset()
        if field in _FALSE_WHEN_NULL:
            return False
        return None
    if isinstance(value, str):
        text = value.strip(WHITESPACE).lower() if field in CASE_INSENSITIVE else value
        return text if text != "" else None
    if isinstance(value, list | tuple | set | frozenset):
        items: Iterable[object] = value
        return frozenset(str(v) for v in items)
    return value


def same_value(field: str, a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are the same value of ``field`` (see :func:`norm`)."""
    return bool(norm(field, a) == norm(field, b))


def norm_expr(field: str, expr: pl.Expr) -> pl.Expr:
    """:func:`norm` as a Polars expression over a column of ``field``'s values (text, list of text, flag)."""
    if field in _SET_FIELDS:
        # list.eval(element().sort()), not list.sort(): the same lists, but Polars 2.1's list.sort takes
        # ~16 µs per non-empty list (0.4 s for 100,000 users' groups), the eval ~0.3 µs
        return expr.fill_null(pl.lit([], dtype=_STR_LIST)).list.unique().list.eval(pl.element().sort())
    if field in _FALSE_WHEN_NULL:
        return expr.fill_null(value=False)
    if field in _BOOL_FIELDS:
        return expr
    if field in CASE_INSENSITIVE:
        expr = expr.str.strip_chars().str.to_lowercase()
    # not when(expr != "").then(expr): that evaluates a trimmed, lower-cased expr twice
    return expr.replace("", None)


def changed_expr(field: str, old: pl.Expr, new: pl.Expr, *, canonical: bool = False) -> pl.Expr:
    """True where ``old`` and ``new`` differ as values of ``field`` (never null): ``not same_value``.

    ``canonical``: for a set field, both sides are already sorted lists without repeats (or null), as the
    planner builds them once per frame; only null is then read as the empty set, and the per-row
    ``unique``/``sort`` of both sides (the bulk of a 100k-user plan's comparison time) is skipped.
    """
    if canonical and field in _SET_FIELDS:
        empty = pl.lit([], dtype=_STR_LIST)
        return old.fill_null(empty).ne_missing(new.fill_null(empty))
    return norm_expr(field, old).ne_missing(norm_expr(field, new))
