"""Regular expressions in rules, checked when the rules are checked (not when users are evaluated).

Polars matches with Rust's ``regex`` crate: linear-time matching, but a pattern compiles to a program
that may be megabytes (``\\w{1000}``), and its syntax differs from Python's (no look-around, no
back-references). A pattern is accepted when it is short, Python's ``re`` parses it, its estimated
compiled size is small (counted repetitions multiply, Unicode classes weigh more), it uses nothing Rust
lacks, and finally Rust's engine compiles it (on an empty column: no data is read).
"""

from __future__ import annotations

import re
import re._parser as sre  # the standard library's own regex parser (Python 3.11+)
from typing import Any

import polars as pl

from scimflow.rules._tokens import ExprError

__all__ = ["MAX_PATTERN_CHARS", "MAX_PATTERN_SIZE", "check_flags", "check_pattern"]

#: Characters in one pattern.
MAX_PATTERN_CHARS = 512
#: Estimated compiled size (about one unit per literal character; a Unicode class such as ``\w`` is 50).
MAX_PATTERN_SIZE = 2_000
_MAX_REPEAT = 1_000
_FLAGS = frozenset("imsxu")
_CLASS_WEIGHT = 50
_ANY_WEIGHT = 10


def check_pattern(pattern: str) -> None:
    """Refuse a pattern that does not compile, is too big, or uses what Polars' regex engine lacks."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ExprError(f"the regular expression is {len(pattern):,} characters long; the limit is {MAX_PATTERN_CHARS}")
    try:
        parsed = sre.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ExprError(f"invalid regular expression {_short(pattern)}: {exc}") from None
    size = _size(parsed)
    if size > MAX_PATTERN_SIZE:
        raise ExprError(
            f"the regular expression {_short(pattern)} is too big (about {size:,} units compiled; the limit is "
            f"{MAX_PATTERN_SIZE:,}): use fewer or smaller counted repetitions"
        )
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.PolarsError as exc:
        reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("error:")), None)
        raise ExprError(
            f"invalid regular expression {_short(pattern)} for Polars: {reason or str(exc).splitlines()[0]}"
        ) from None


def check_flags(flags: str) -> None:
    """Refuse regex flags other than ``i``, ``m``, ``s``, ``x``, ``u`` (each at most once)."""
    if set(flags) - _FLAGS or len(set(flags)) != len(flags):
        raise ExprError(f"regular expression flags {flags!r}: use each of {''.join(sorted(_FLAGS))} at most once")


def _size(items: Any) -> int:
    """Estimated compiled size of a parsed pattern (a ``SubPattern`` or list of ``(op, arg)``)."""
    total = 0
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, sub = av
            count = low + 1 if high == sre.MAXREPEAT else high
            if count > _MAX_REPEAT:
                raise ExprError(
                    f"a counted repetition of {count:,} in a regular expression; the limit is {_MAX_REPEAT}"
                )
            total += max(count, 1) * max(_size(sub), 1)
        elif op is sre.SUBPATTERN:
            total += _size(av[-1])
        elif op in (sre.ATOMIC_GROUP,):
            total += _size(av)
        elif op is sre.BRANCH:
            total += sum(_size(sub) for sub in av[1])
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            raise ExprError("look-ahead and look-behind are not supported in Polars regular expressions")
        elif op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            raise ExprError("back-references are not supported in Polars regular expressions")
        elif op is sre.IN:
            total += _CLASS_WEIGHT if any(o in (sre.CATEGORY, sre.NEGATE) for o, _ in av) else 2
        elif op is sre.ANY:
            total += _ANY_WEIGHT
        else:
            total += 1
        if total > MAX_PATTERN_SIZE * 10:
            break  # already far over: stop estimating
    return total


def _short(pattern: str) -> str:
    return repr(pattern if len(pattern) <= 40 else pattern[:37] + "...")
