"""Safe compilation of rule expressions (Polars SQL) into ``pl.Expr``.

``pl.sql_expr`` never runs Python, but a subquery inside it is planned at *parse* time, and its table
functions (``read_csv('/path')``) open files then; long operator chains take quadratic time to plan and
very long ones crash it; nested ``replace`` calls can grow a value exponentially. So the text is checked
before it reaches Polars, by :func:`check_text`: a single-pass tokenizer (``_tokens``) caps the length,
the number of tokens and the nesting, reads string literals and quoted identifiers (under both quoting
conventions, with and without backslash escapes, so neither can hide anything) and allows only plain
ASCII outside quotes (no comments, ``;``, ``$``, dunder or dotted names). The tokens are then checked:
no query keyword (``SELECT``, ``FROM``, ``VALUES``, ...), every call on the allow-list, every regular
expression a literal that compiles and is small (``_regex``), ``replace``/``lpad``/``rpad`` bounded.
Only then is the text parsed, and the columns it reads are checked against the allowed ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import polars as pl

from scimflow.rules._regex import check_flags, check_pattern
from scimflow.rules._tokens import ExprError, Token, tokenize

__all__ = ["ALLOWED_FUNCTIONS", "MAX_GROWTH", "MAX_PAD", "ExprError", "check_text", "compile_sql"]


#: Scalar SQL functions a rule expression may call (lower case). Table functions are never allowed, and
#: neither are functions whose output can grow without bound (``repeat``, ``regexp_replace``): ``replace``,
#: ``lpad`` and ``rpad`` are allowed with literal arguments and a bounded growth (see below).
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # text
        "lower", "upper", "trim", "ltrim", "rtrim", "btrim", "length", "char_length", "character_length",
        "octet_length", "concat", "concat_ws", "left", "right", "substr", "replace", "reverse", "starts_with",
        "ends_with", "strpos", "split_part", "initcap", "lpad", "rpad", "regexp_like", "normalize",
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

#: Operators and keywords whose right-hand side is a regular expression.
_REGEX_OPERATORS = frozenset({"~", "~*", "!~", "!~*", "rlike", "regexp"})
#: What may follow a regex literal after an operator (so that nothing is appended to the pattern).
_AFTER_PATTERN = frozenset({")", ",", "and", "or", "then", "else", "end", "when"})
#: How much longer than its longest input a text built by one expression may be: the pieces joined
#: (``||``, ``concat``, ``concat_ws``) times what its ``replace`` calls may multiply. Bounds the memory
#: any expression can take per user. And the longest pad.
MAX_GROWTH = 32
MAX_PAD = 256
_KEYWORDS = frozenset({"in", "and", "or", "not", "any", "all", "then", "else", "when", "case", "like", "ilike", "is"})


def check_text(text: str) -> int:
    """Refuse anything that is not a plain, bounded scalar expression, *before* Polars parses it.

    Returns the number of tokens (the loader also caps the total per file).

    Raises:
        ExprError: too long or complex, a query word, a comment, a function not on the allow-list, a
            dotted name, a regular expression that does not compile or is too big, unbounded growth.
    """
    if not text.strip():
        raise ExprError("the expression is empty")
    count = 0
    for backslash in (False, True) if "\\" in text else (False,):  # without a backslash both read alike
        tokens = tokenize(text, backslash=backslash)
        _check_tokens(tokens)
        count = max(count, len(tokens))
    return count


def _check_tokens(tokens: list[Token]) -> None:
    growth = 1.0
    pieces = 1
    for k, tok in enumerate(tokens):
        nxt = tokens[k + 1] if k + 1 < len(tokens) else None
        opens_call = nxt is not None and nxt.kind == "op" and nxt.text == "("
        if tok.kind == "str" and nxt is not None and nxt.kind == "str":
            raise ExprError("two texts in a row: write them as one quoted text")
        if tok.kind == "qid" and opens_call:
            raise ExprError(f"function a quoted name is not allowed (allowed: {', '.join(sorted(_public()))})")
        if tok.kind == "op" and tok.text in _REGEX_OPERATORS:
            _regex_operand(tokens, k)
        if tok.kind == "op" and tok.text == "||":
            pieces += 1
            _check_growth(pieces, growth)
        if tok.kind != "word":
            continue
        word = tok.text.lower()
        if word in _FORBIDDEN_WORDS:
            raise ExprError(f"'{tok.text}' is not allowed: an expression may not contain a query or subquery")
        if word in _REGEX_OPERATORS:
            _regex_operand(tokens, k)
        if not opens_call:
            continue
        if word not in ALLOWED_FUNCTIONS:
            raise ExprError(f"function '{tok.text}' is not allowed (allowed: {', '.join(sorted(_public()))})")
        if word in ("regexp_like", "replace", "lpad", "rpad"):
            growth *= _check_call(word, _arguments(tokens, k + 1))
        elif word == "concat":
            pieces += max(len(_arguments(tokens, k + 1)) - 1, 0)
        elif word == "concat_ws":  # n values and n - 1 separators
            pieces += max(2 * len(_arguments(tokens, k + 1)) - 4, 0)
        _check_growth(pieces, growth)


def _check_growth(pieces: int, growth: float) -> None:
    if pieces * growth > MAX_GROWTH:
        raise ExprError(
            f"this expression could build a text more than {MAX_GROWTH} times longer than its inputs "
            f"({pieces} pieces joined, replace() growth {growth:g}): join fewer pieces, or replace less"
        )


def _arguments(tokens: list[Token], open_at: int) -> list[list[Token]]:
    """The argument token lists of the call whose ``(`` is at ``open_at``."""
    args: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens[open_at + 1 :]:
        if tok.kind == "op" and tok.text in "([":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]":
            if depth == 0:
                return args if args != [[]] else []
            depth -= 1
        elif tok.kind == "op" and tok.text == "," and depth == 0:
            args.append([])
            continue
        args[-1].append(tok)
    raise ExprError("unbalanced brackets")


def _literal(arg: list[Token], kind: str, what: str) -> str:
    if len(arg) != 1 or arg[0].kind != kind:
        raise ExprError(what)
    return arg[0].text


def _check_call(name: str, args: list[list[Token]]) -> float:
    """Check the literal arguments of a regex or growing call; return its growth factor."""
    if name == "regexp_like":
        if len(args) not in (2, 3):
            raise ExprError("regexp_like takes (value, 'pattern') or (value, 'pattern', 'flags')")
        check_pattern(_literal(args[1], "str", "regexp_like: the pattern must be one quoted text"))
        if len(args) == 3:
            check_flags(_literal(args[2], "str", "regexp_like: the flags must be one quoted text"))
        return 1.0
    if name == "replace":
        if len(args) != 3:
            raise ExprError("replace takes (value, 'from', 'to')")
        old = _literal(args[1], "str", "replace: 'from' must be one quoted text")
        new = _literal(args[2], "str", "replace: 'to' must be one quoted text")
        if not old:
            raise ExprError("replace: 'from' must not be empty")
        return max(1.0, len(new) / len(old))
    if len(args) not in (2, 3):  # lpad / rpad
        raise ExprError(f"{name} takes (value, length) or (value, length, 'fill')")
    width = _literal(args[1], "num", f"{name}: the length must be a number")
    if not width.isdigit() or int(width) > MAX_PAD:
        raise ExprError(f"{name}: the length must be a whole number up to {MAX_PAD}")
    if len(args) == 3:
        _literal(args[2], "str", f"{name}: the fill must be one quoted text")
    return 1.0


def _regex_operand(tokens: list[Token], k: int) -> None:
    """The operand after a regex operator at ``k`` must be one quoted text, checked as a pattern."""
    operand = tokens[k + 1] if k + 1 < len(tokens) else None
    after = tokens[k + 2] if k + 2 < len(tokens) else None
    if operand is None or operand.kind != "str" or (after is not None and after.text.lower() not in _AFTER_PATTERN):
        raise ExprError(f"'{tokens[k].text}' must be followed by one quoted regular expression")
    check_pattern(operand.text)


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
