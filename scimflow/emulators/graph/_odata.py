"""OData bits of the emulator: ``$filter`` (the simple operators), ``$select``, opaque page/delta tokens.

``$filter`` supports what Graph supports on users *without* advanced-query headers (reference/graph.md
§1): ``eq`` / ``in`` / ``startsWith`` on string properties, ``eq null``, ``accountEnabled eq true|false``,
joined by ``and`` / ``or`` (``and`` binds tighter). ``ne`` and ``endsWith`` need ``ConsistencyLevel:
eventual`` plus ``$count=true``, as in Graph; anything else is ``Request_UnsupportedQuery``.

Tokens (``$skiptoken``, ``$deltatoken``) are base64url JSON with an HMAC so clients cannot forge or edit
them, and carry the emulator instance's nonce so a token from another run is ``syncStateNotFound``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["FilterError", "TokenCodec", "compile_filter"]

Predicate = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    """A ``$filter`` the emulator (like Graph without advanced queries) does not accept."""

    def __init__(self, message: str, *, code: str = "Request_UnsupportedQuery") -> None:
        super().__init__(message)
        self.code = code


_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*') |
        (?P<lp>\() | (?P<rp>\)) | (?P<comma>,) |
        (?P<word>[A-Za-z_][A-Za-z0-9_./]*)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos = 0
    out: list[tuple[str, str]] = []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.", code="BadRequest")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, *, advanced: bool, string_props: frozenset[str], bool_props: frozenset[str]) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.text = text
        self.advanced = advanced
        self.string_props = string_props
        self.bool_props = bool_props

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, word: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (word and tok[1].lower() != word):
            raise FilterError(f"Invalid filter clause: unexpected token in '{self.text}'.", code="BadRequest")
        self.i += 1
        return tok[1]

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"Invalid filter clause: unexpected token in '{self.text}'.", code="BadRequest")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while (tok := self.peek()) and tok[0] == "word" and tok[1].lower() == "or":
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda u: any(p(u) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.atom()]
        while (tok := self.peek()) and tok[0] == "word" and tok[1].lower() == "and":
            self.i += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else (lambda u: all(p(u) for p in parts))

    def prop(self, name: str) -> str:
        if name not in self.string_props and name not in self.bool_props:
            raise FilterError(
                f"Could not find a property named '{name}' on type 'microsoft.graph.user'.", code="Request_BadRequest"
            )
        return name

    def atom(self) -> Predicate:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"Invalid filter clause: incomplete '{self.text}'.", code="BadRequest")
        if tok[0] == "lp":
            self.i += 1
            inner = self.or_expr()
            self.take("rp")
            return inner
        word = self.take("word")
        low = word.lower()
        if low in ("startswith", "endswith"):
            if low == "endswith" and not self.advanced:
                raise FilterError("Unsupported Query.")
            self.take("lp")
            name = self.prop(self.take("word"))
            self.take("comma")
            value = self.take("str").lower()
            self.take("rp")
            if low == "startswith":
                return lambda u: str(u.get(name) or "").lower().startswith(value)
            return lambda u: str(u.get(name) or "").lower().endswith(value)
        if low == "not":
            raise FilterError("Unsupported Query.")
        name = self.prop(word)
        op = self.take("word").lower()
        if op == "in":
            self.take("lp")
            values = [self.take("str").lower()]
            while self.peek() == ("comma", ","):
                self.i += 1
                values.append(self.take("str").lower())
            self.take("rp")
            if len(values) > 15:
                raise FilterError(
                    "Too many child clauses specified in search filter expression containing 'OR' operators: "
                    f"{len(values)}. Max allowed: 15.",
                    code="Request_UnsupportedQuery",
                )
            allowed = set(values)
            return lambda u: str(u.get(name) or "").lower() in allowed
        if op not in ("eq", "ne"):
            raise FilterError("Unsupported Query.")
        if op == "ne" and not self.advanced:
            raise FilterError("Unsupported Query.")
        negate = op == "ne"
        tok = self.peek()
        if tok is None:
            raise FilterError(f"Invalid filter clause: incomplete '{self.text}'.", code="BadRequest")
        if tok[0] == "word" and tok[1] in ("true", "false", "null"):
            self.i += 1
            if tok[1] == "null":
                return lambda u: (u.get(name) is None) != negate
            if name not in self.bool_props:
                raise FilterError("Unsupported Query.")
            want = tok[1] == "true"
            return lambda u: (u.get(name) is want) != negate
        if name in self.bool_props:
            raise FilterError(
                f"A binary operator with incompatible types was detected in '{self.text}'.", code="BadRequest"
            )
        value = self.take("str").lower()
        return lambda u: (str(u.get(name) or "").lower() == value if u.get(name) is not None else False) != negate


def compile_filter(text: str, *, advanced: bool, string_props: frozenset[str], bool_props: frozenset[str]) -> Predicate:
    """Compile a ``$filter`` into a predicate over user dicts (comparisons are case-insensitive, like Graph's)."""
    return _Parser(text, advanced=advanced, string_props=string_props, bool_props=bool_props).parse()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCodec:
    """Opaque, tamper-proof page and delta tokens bound to one emulator instance."""

    def __init__(self, key: bytes, nonce: str) -> None:
        self._key = key
        self.nonce = nonce

    def encode(self, payload: dict[str, Any]) -> str:
        body = json.dumps({**payload, "n": self.nonce}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return _b64(mac + body)

    def decode(self, token: str) -> dict[str, Any] | None:
        """The payload, or ``None`` when the token is malformed, forged or from another instance."""
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            return None
        mac, body = raw[:12], raw[12:]
        if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()[:12]):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("n") != self.nonce:
            return None
        return payload
