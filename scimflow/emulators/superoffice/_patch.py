"""JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7396) as SuperOffice's Web API applies them.

SuperOffice documents (v1User_PatchUser.md) that paths are *case-insensitive* and that the leading slash
is optional; ``test`` failures answer 409. Only ``add``, ``remove``, ``replace`` and ``test`` are
documented, so ``move`` / ``copy`` are refused as a bad request.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PatchConflict", "PatchError", "apply_json_patch", "apply_merge_patch"]


class PatchError(ValueError):
    """The patch document is malformed or a path does not exist (400)."""


class PatchConflict(ValueError):  # noqa: N818 - mirrors the HTTP meaning (409)
    """A ``test`` operation did not match (409)."""


def _key(obj: dict[str, Any], name: str) -> str | None:
    """The existing key of ``obj`` matching ``name`` case-insensitively (``None`` when absent)."""
    if name in obj:
        return name
    low = name.lower()
    for k in obj:
        if k.lower() == low:
            return k
    return None


def _tokens(path: Any) -> list[str]:
    if not isinstance(path, str):
        msg = "path must be a string"
        raise PatchError(msg)
    path = path.lstrip("/")
    if not path:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:  # noqa: S105 - "-" is the RFC 6902 end-of-array index
        return len(container)
    try:
        i = int(token)
    except ValueError:
        msg = f"bad array index {token!r}"
        raise PatchError(msg) from None
    limit = len(container) if allow_end else len(container) - 1
    if i < 0 or i > limit:
        msg = f"array index {i} out of range"
        raise PatchError(msg)
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for t in tokens[:-1]:
        if isinstance(node, dict):
            k = _key(node, t)
            if k is None:
                msg = f"path segment {t!r} not found"
                raise PatchError(msg)
            node = node[k]
        elif isinstance(node, list):
            node = node[_index(node, t, allow_end=False)]
        else:
            msg = f"path segment {t!r} is below a scalar"
            raise PatchError(msg)
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        k = _key(parent, last)
        if k is None:
            msg = f"path segment {last!r} not found"
            raise PatchError(msg)
        return parent[k]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    msg = f"path segment {last!r} is below a scalar"
    raise PatchError(msg)


def _equal(a: Any, b: Any) -> bool:
    """RFC 6902 equality: JSON values, objects compared by members (keys case-insensitively here)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        return all((k2 := _key(b, k)) is not None and _equal(v, b[k2]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def apply_json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Apply ``ops`` to a deep copy of ``doc`` atomically; raise :class:`PatchConflict` / :class:`PatchError`."""
    if not isinstance(ops, list):
        msg = "a JSON Patch is an array of operations"
        raise PatchError(msg)
    out = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            msg = "each operation needs 'op' and 'path'"
            raise PatchError(msg)
        kind = str(op["op"]).lower()
        tokens = _tokens(op["path"])
        if kind == "test":
            try:
                current = _get(out, tokens)
            except PatchError as exc:
                raise PatchConflict(f"test failed: {exc}") from None
            if not _equal(current, op.get("value")):
                raise PatchConflict(f"test failed at {op['path']}")
            continue
        if kind not in ("add", "remove", "replace"):
            msg = f"unsupported operation {kind!r}"
            raise PatchError(msg)
        if not tokens:
            if kind == "remove" or not isinstance(op.get("value"), dict):
                msg = "cannot remove or replace the whole document with a non-object"
                raise PatchError(msg)
            out = copy.deepcopy(op["value"])
            continue
        parent = _parent(out, tokens)
        last = tokens[-1]
        if isinstance(parent, dict):
            k = _key(parent, last)
            if kind == "add":
                parent[k or last] = copy.deepcopy(op.get("value"))
            elif k is None:
                msg = f"path {op['path']!r} not found"
                raise PatchError(msg)
            elif kind == "remove":
                del parent[k]
            else:
                parent[k] = copy.deepcopy(op.get("value"))
        elif isinstance(parent, list):
            if kind == "add":
                parent.insert(_index(parent, last, allow_end=True), copy.deepcopy(op.get("value")))
            elif kind == "remove":
                del parent[_index(parent, last, allow_end=False)]
            else:
                parent[_index(parent, last, allow_end=False)] = copy.deepcopy(op.get("value"))
        else:
            msg = f"path {op['path']!r} is below a scalar"
            raise PatchError(msg)
    return out


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7396 merge patch (object keys matched case-insensitively, as the Web API does)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for name, value in patch.items():
        k = _key(out, name)
        if value is None:
            if k is not None:
                del out[k]
        else:
            out[k or name] = apply_merge_patch(out.get(k) if k else None, value)
    return out
