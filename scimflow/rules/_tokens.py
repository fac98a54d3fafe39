"""A single-pass tokenizer for rule expressions, with the size limits checked on the way.

Every character outside a quoted text or a quoted name must be plain ASCII from a short list (letters,
digits, ``_``, space, tab, newline and a few operators), so no separator or look-alike code point can
hide a word from the checks that follow. The scan is one left-to-right pass with no backtracking, and it
stops at the first problem or as soon as a limit is passed, so its cost is linear in the text and capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_DEPTH", "MAX_EXPR_CHARS", "MAX_NAME_CHARS", "MAX_TOKENS", "ExprError", "Token", "tokenize"]

#: Characters in one expression (a 10,000-character text literal still fits).
MAX_EXPR_CHARS = 16_384
#: Tokens (names, literals, operators, brackets) in one expression: Polars plans long operator chains in
#: quadratic time, so this bounds the time any accepted expression can take to compile.
MAX_TOKENS = 500
#: Bracket nesting depth in one expression.
MAX_DEPTH = 24
#: Characters in one name (column or function, quoted or not); Graph's attribute names are far shorter.
MAX_NAME_CHARS = 64

Kind = Literal["str", "qid", "word", "num", "op"]


class ExprError(ValueError):
    """An expression is unsafe, invalid, or reads a column that does not exist."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (a literal's *content*, unquoted) and its offset in the expression."""

    kind: Kind
    text: str
    pos: int


_SPACE = frozenset(" \t\r\n")
_WORD_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_WORD_CHARS = _WORD_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
#: Operators, longest first (``::`` is a cast; a lone ``:`` is a placeholder and refused).
_OPERATORS: tuple[str, ...] = (
    *("!~*", "::", "<=", ">=", "<>", "!=", "||", "~*", "!~"),
    *("(", ")", "[", "]", ",", "+", "-", "*", "/", "%", "=", "<", ">", "~", "|", "&"),
)
_EXPLAINED = {
    ";": "';' is not allowed in expressions (one expression, not statements)",
    "$": "'$' is not allowed in expressions",
    "\\": "'\\' is not allowed outside quoted text",
    ".": "dotted names (a.b) are not allowed",
    ":": "':' is not allowed (placeholders are not supported; '::' is a cast)",
    "?": "'?' is not allowed (placeholders are not supported)",
    "@": "'@' is not allowed outside quoted text",
    "#": "'#' is not allowed outside quoted text",
}


def tokenize(text: str, *, backslash: bool) -> list[Token]:
    """Split ``text`` into tokens; ``backslash`` reads ``\\'`` inside single-quoted text as an escape.

    Both conventions are checked by the caller so that neither can hide anything from the other.

    Raises:
        ExprError: the text is too long, too deep or has too many tokens; holds a comment, a character
            that is not allowed outside quotes, an unterminated quote, or a dotted name.
    """
    n = len(text)
    if n > MAX_EXPR_CHARS:
        raise ExprError(f"the expression is {n:,} characters long; the limit is {MAX_EXPR_CHARS:,}")
    tokens: list[Token] = []
    depth = 0
    i = 0
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
            continue
        if len(tokens) >= MAX_TOKENS:
            raise ExprError(f"the expression has more than {MAX_TOKENS} parts (names, values, operators); simplify it")
        if c in "'\"`":
            last = tokens[-1] if tokens else None
            if last is not None and last.kind in ("word", "num") and last.pos + len(last.text) == i:
                raise ExprError(f"a quote directly after '{last.text}' is not allowed (no prefixed literals)")
            i = _quoted(text, i, c, tokens, backslash=backslash)
            continue
        if c in _WORD_START:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            word = text[i:j]
            if tokens and tokens[-1].kind == "num" and tokens[-1].pos + len(tokens[-1].text) == i:
                raise ExprError(f"a name directly after a number ('{tokens[-1].text}{word}') is not allowed")
            if len(word) > MAX_NAME_CHARS:
                raise ExprError(f"a name of {len(word):,} characters; the limit is {MAX_NAME_CHARS}")
            if "__" in word:
                raise ExprError("names with '__' are not allowed (this is SQL, not Python)")
            tokens.append(Token("word", word, i))
            i = j
            continue
        if c in _DIGITS:
            i = _number(text, i, tokens)
            continue
        if text.startswith(("--", "/*"), i):
            raise ExprError("comments are not allowed in expressions (use YAML comments)")
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is None:
            raise ExprError(_EXPLAINED.get(c) or f"the character {c!r} (U+{ord(c):04X}) is not allowed outside quotes")
        if op in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise ExprError(f"brackets are nested more than {MAX_DEPTH} deep")
        elif op in ")]":
            depth -= 1
        tokens.append(Token("op", op, i))
        i += len(op)
    return tokens


def _quoted(text: str, i: int, q: str, tokens: list[Token], *, backslash: bool) -> int:
    """Read the quoted text or name starting at ``i``; append its token; return the index after it."""
    n = len(text)
    j = i + 1
    parts: list[str] = []
    start = j
    while True:
        if j >= n:
            raise ExprError(f"unterminated quote {q}")
        ch = text[j]
        if backslash and q == "'" and ch == "\\":
            j += 2
            continue
        if ch == q:
            if j + 1 < n and text[j + 1] == q:  # a doubled quote is an escaped quote
                parts.append(text[start : j + 1])
                j += 2
                start = j
                continue
            break
        j += 1
    parts.append(text[start:j])
    if q != "'" and j - i - 1 > MAX_NAME_CHARS:
        raise ExprError(f"a quoted name of {j - i - 1:,} characters; the limit is {MAX_NAME_CHARS}")
    tokens.append(Token("str" if q == "'" else "qid", "".join(parts), i))
    return j + 1


def _number(text: str, i: int, tokens: list[Token]) -> int:
    n = len(text)
    j = i
    while j < n and text[j] in _DIGITS:
        j += 1
    if j + 1 < n and text[j] == "." and text[j + 1] in _DIGITS:
        j += 1
        while j < n and text[j] in _DIGITS:
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k] in _DIGITS:
            j = k
            while j < n and text[j] in _DIGITS:
                j += 1
    tokens.append(Token("num", text[i:j], i))
    return j
