"""JSON text built by Polars expressions (for ``changes`` and plan lines), matching ``json.dumps``.

Polars' encoder escapes like ``json.dumps`` for printable ASCII; anything else (non-ASCII text,
control characters, quotes or backslashes) is re-serialised in Python by the plan writer, so the bytes
always equal ``json.dumps(row, sort_keys=True, separators=(",", ":"))``.
"""

from __future__ import annotations

import polars as pl

__all__ = ["json_value", "object_member"]


def json_value(expr: pl.Expr) -> pl.Expr:
    """The JSON text of ``expr``'s value (``null``, ``"text"``, ``true``, ``["a","b"]``, ``12``)."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")


def object_member(name: str, value_json: pl.Expr) -> pl.Expr:
    """``"name":<value_json>`` (``name`` must be a plain identifier)."""
    return pl.concat_str([pl.lit(f'"{name}":'), value_json])
