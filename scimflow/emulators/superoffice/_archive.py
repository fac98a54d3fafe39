"""The archive ``$filter`` language, as far as scimflow and its tests use it.

SuperOffice's archive restrictions (v1User_GetAll.md) are ``column operator value`` clauses joined by
``and``. Supported here: ``eq``/``equals``/``is``, ``ne``/``unequals``/``isNot``, ``begins``/``startswith``,
``notBegins``, ``contains``/``notContains``, ``oneOf``/``notOneOf`` (``col oneOf(1,2,3)``), and the integer
comparisons ``gt ge lt le``. String comparisons are case-insensitive, as SuperOffice searches are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Clause", "FilterError", "matches", "parse_filter"]

_CLAUSE = re.compile(
    r"\s*(?P<col>[A-Za-z_][\w/.\-]*)\s+(?P<op>[A-Za-z]+)\s*"
    r"(?P<val>\((?:[^()']|'(?:[^']|'')*')*\)|'(?:[^']|'')*'|[^\s()']+)\s*",
)
_AND = re.compile(r"and\b", re.IGNORECASE)
_ITEM = re.compile(r"\s*('(?:[^']|'')*'|[^,\s]+)\s*(?:,|$)")


class FilterError(ValueError):
    """The ``$filter`` cannot be parsed (400)."""


@dataclass(frozen=True, slots=True)
class Clause:
    column: str
    op: str
    value: Any  # a scalar, or a frozenset of normalised values for oneOf / notOneOf


def _literal(raw: str) -> Any:
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def parse_filter(text: str | None) -> list[Clause]:
    """Parse ``text`` into clauses (all must hold)."""
    if not text or not text.strip():
        return []
    clauses: list[Clause] = []
    pos = 0
    while True:
        m = _CLAUSE.match(text, pos)
        if not m:
            msg = f"cannot parse $filter near {text[pos : pos + 40]!r}"
            raise FilterError(msg)
        op = m.group("op").lower()
        raw = m.group("val")
        if op in ("oneof", "notoneof"):
            if not (raw.startswith("(") and raw.endswith(")")):
                msg = f"{m.group('op')} needs a parenthesised list"
                raise FilterError(msg)
            inner = raw[1:-1]
            value: Any = frozenset(_norm(_literal(x.group(1))) for x in _ITEM.finditer(inner) if x.group(1))
        else:
            value = _literal(raw)
        clauses.append(Clause(m.group("col"), op, value))
        pos = m.end()
        if pos >= len(text):
            return clauses
        a = _AND.match(text, pos)
        if not a:
            msg = f"expected 'and' near {text[pos : pos + 40]!r}"
            raise FilterError(msg)
        pos = a.end()


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        return v.casefold()
    return v


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) and isinstance(b, int) and not isinstance(b, bool):
        return int(a) == b
    if isinstance(a, int) and isinstance(b, str):
        return str(a) == b
    return bool(_norm(a) == _norm(b))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _eq,
    "equals": _eq,
    "is": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "unequals": lambda a, b: not _eq(a, b),
    "isnot": lambda a, b: not _eq(a, b),
    "begins": lambda a, b: isinstance(a, str) and a.casefold().startswith(str(b).casefold()),
    "startswith": lambda a, b: isinstance(a, str) and a.casefold().startswith(str(b).casefold()),
    "notbegins": lambda a, b: not (isinstance(a, str) and a.casefold().startswith(str(b).casefold())),
    "contains": lambda a, b: isinstance(a, str) and str(b).casefold() in a.casefold(),
    "notcontains": lambda a, b: not (isinstance(a, str) and str(b).casefold() in a.casefold()),
    "oneof": lambda a, b: _norm(a) in b,
    "notoneof": lambda a, b: _norm(a) not in b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
}


def check_ops(clauses: list[Clause]) -> None:
    """Raise :class:`FilterError` for an operator this emulator does not implement."""
    for c in clauses:
        if c.op not in _OPS:
            msg = f"unsupported operator {c.op!r}"
            raise FilterError(msg)


def matches(clauses: list[Clause], get: Callable[[str], Any]) -> bool:
    """True when every clause holds for the row whose columns ``get`` returns."""
    try:
        return all(_OPS[c.op](get(c.column), c.value) for c in clauses)
    except TypeError:
        return False
