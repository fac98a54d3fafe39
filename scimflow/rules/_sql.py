"""Safe compilation of rule expressions (Polars SQL) into ``pl.Expr``.

``pl.sql_expr`` never runs Python, but a subquery inside it is planned at *parse* time, and its table
functions (``read_csv('/path')``) open files then. So the text is checked before it reaches Polars:
a small lexer removes string literals and quoted identifiers (under both quoting conventions, with and
without backslash escapes, so neither can hide anything), then refuses query keywords (``SELECT``,
``FROM``, ``VALUES``, ...), comments, ``;``, ``$``, dunder names, dotted access and any function not on an
allow-list. Only then is the text parsed, and the columns it reads are checked against the allowed ones.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import polars as pl

__all__ = ["ALLOWED_FUNCTIONS", "ExprError", "check_text", "compile_sql"]


class ExprError(ValueError):
    """An expression is unsafe, invalid, or reads a column that does not exist."""


#: Scalar SQL functions a rule expression may call (lower case). Table functions are never allowed.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # text
        "lower", "upper", "trim", "ltrim", "rtrim", "btrim", "length", "char_length", "character_length",
        "octet_length", "concat", "concat_ws", "left", "right", "substr", "replace", "reverse", "starts_with",
        "ends_with", "strpos", "split_part", "initcap", "lpad", "rpad", "regexp_like", "regexp_replace",
        "normalize",
        # null handling and comparison
        "coalesce", "nullif", "ifnull", "nvl", "greatest", "least",
        # lists (``groups``, ``group_ids``, ``businessPhones``)
        "array_contains", "array_length", "array_get", "array_to_string", "array_lower", "array_upper",
        "array_min", "array_max", "array_unique",
        # numbers and casts
        "abs", "round", "floor", "ceil", "cast", "try_cast",
        # keywords that take parentheses
        "in", "and", "or", "not", "any", "all", "then", "else", "when", "case", "like", "ilike", "is", "between",
        "array",
    }
)  # fmt: skip

_FORBIDDEN_WORDS = frozenset(
    {
        "select", "from", "values", "table", "with", "exists", "union", "intersect", "except", "into", "join",
        "lateral", "limit", "offset", "order", "group", "having", "window", "over", "returning",
    }
)  # fmt: skip

_WORD = re.compile(r"[^\W\d]\w*")
_CALL = re.compile(r"([^\W\d]\w*|\"q\"|`q`)\s*\(")
_DOTTED = re.compile(r"[A-Za-z_\"`)\]]\s*\.\s*[A-Za-z_\"`(]")


def _strip(text: str, *, backslash: bool) -> str:
    """``text`` with string literals replaced by ``''`` and quoted identifiers by ``"q"``.

    Raises :class:`ExprError` for comments, ``$`` and unterminated quotes.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while True:
                if j >= n:
                    raise ExprError(f"unterminated quote {c}")
                if backslash and c == "'" and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote = escaped quote
                        j += 2
                        continue
                    break
                j += 1
            out.append("''" if c == "'" else f"{c}q{c}")
            i = j + 1
            continue
        if text.startswith(("--", "/*"), i):
            raise ExprError("comments are not allowed in expressions (use YAML comments)")
        if c in ";$\\":
            raise ExprError(f"'{c}' is not allowed in expressions")
        out.append(c)
        i += 1
    return "".join(out)


def check_text(text: str) -> None:
    """Refuse anything that is not a plain scalar expression, *before* Polars parses it."""
    if not text.strip():
        raise ExprError("the expression is empty")
    for backslash in (False, True):
        bare = _strip(text, backslash=backslash)
        if "__" in bare:
            raise ExprError("names with '__' are not allowed (this is SQL, not Python)")
        for m in _WORD.finditer(bare):
            if m.group(0).lower() in _FORBIDDEN_WORDS:
                raise ExprError(f"'{m.group(0)}' is not allowed: an expression may not contain a query or subquery")
        for m in _CALL.finditer(bare):
            name = m.group(1)
            if name.lower() not in ALLOWED_FUNCTIONS:
                shown = "a quoted name" if name in {'"q"', "`q`"} else f"'{name}'"
                raise ExprError(f"function {shown} is not allowed (allowed: {', '.join(sorted(_public()))})")
        if _DOTTED.search(bare):
            raise ExprError("dotted names (a.b) are not allowed")


_KEYWORDS = frozenset({"in", "and", "or", "not", "any", "all", "then", "else", "when", "case", "like", "ilike", "is"})


def _public() -> Iterable[str]:
    return ALLOWED_FUNCTIONS - _KEYWORDS - {"between"}


def compile_sql(text: str, schema: pl.Schema, *, boolean: bool) -> pl.Expr:
    """Check, parse and type-check ``text`` against ``schema``.

    Args:
        text: the SQL expression.
        schema: the columns it may read, with their dtypes.
        boolean: a condition (must be Boolean; NULL becomes false) rather than a mapped value (text).

    Raises:
        ExprError: the expression is unsafe, does not parse, reads unknown columns or has the wrong type.
    """
    check_text(text)
    try:
        expr = pl.sql_expr(text)
    except pl.exceptions.PolarsError as exc:
        raise ExprError(f"invalid SQL: {_first_line(exc)}") from None
    unknown = [c for c in expr.meta.root_names() if c not in schema]
    if unknown:
        col = unknown[0]
        hint = difflib.get_close_matches(col, list(schema.names()), n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ExprError(f"unknown column '{col}'{extra} (text in double quotes is a column name; quote text with ')")
    try:
        dtype = pl.LazyFrame(schema=schema).select(expr.alias("x")).collect_schema()["x"]
    except pl.exceptions.PolarsError as exc:
        raise ExprError(f"invalid expression: {_first_line(exc)}") from None
    if boolean:
        if dtype not in (pl.Boolean, pl.Null):
            raise ExprError(f"a condition must be true or false, this gives {dtype}")
        return expr.fill_null(value=False)
    if dtype == pl.Null:
        return expr.cast(pl.String)
    if dtype != pl.String:
        raise ExprError(f"a mapped value must be text, this gives {dtype}")
    return expr


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
