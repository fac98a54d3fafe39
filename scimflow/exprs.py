"""Small Polars expression helpers shared by the rules compiler and the planner."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

__all__ = ["join_present"]


def join_present(parts: Sequence[pl.Expr], separator: str) -> pl.Expr:
    """The non-null texts of ``parts`` joined by ``separator``; null when none is present."""
    if not parts:
        return pl.lit(None, dtype=pl.String)
    # replace, not when(joined != "").then(joined): that would build the joined text twice
    return pl.concat_str(parts, separator=separator, ignore_nulls=True).replace("", None)
