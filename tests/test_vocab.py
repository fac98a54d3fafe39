"""The vocabulary: action names, count keys, and one value comparison shared by the planner and apply."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scimflow import vocab
from scimflow.vocab import CASE_INSENSITIVE, CHANGE_ACTIONS, COUNT_KEYS, ROW_ACTIONS, changed_expr, norm, same_value

_TEXT_FIELDS = ("user_name", "email", "first_name", "title", "role", "user_plan")


def test_count_keys_are_summary_order():
    """The count keys are the nine of summary.json, in its order, and contain every row action."""
    assert COUNT_KEYS == (
        "create",
        "update",
        "retire",
        "reactivate",
        "quarantine",
        "conflict",
        "unchanged",
        "unmanaged",
        "out_of_scope",
    )
    assert CHANGE_ACTIONS == ("create", "update", "retire", "reactivate")
    assert (*CHANGE_ACTIONS, "quarantine", "conflict") == ROW_ACTIONS
    assert set(ROW_ACTIONS) <= set(COUNT_KEYS)
    assert {"user_name", "email"} == CASE_INSENSITIVE


@pytest.mark.parametrize(
    ("field", "a", "b", "same"),
    [
        ("user_name", " Ada@Example.COM ", "ada@example.com", True),
        ("email", "ADA@x.io", "ada@x.io", True),
        ("user_name", "ada\u3000", "ada", True),
        ("user_name", "Straße", "strasse", False),  # lower-cased, not casefolded
        ("first_name", "Ada", "ada", False),
        ("first_name", " Ada", "Ada", False),  # other strings exactly
        ("title", "", None, True),
        ("user_name", "   ", None, True),
        ("title", " ", None, False),
        ("secondary_groups", ["b", "a"], ["a", "b", "a"], True),
        ("secondary_groups", None, [], True),
        ("secondary_groups", ["a"], [], False),
        ("confidential", None, False, True),
        ("confidential", None, True, False),
        ("active", True, True, True),
        ("active", None, False, False),
        ("role", "Admin", "Admin", True),
        ("role", "Admin", "admin", False),
    ],
)
def test_same_value(field: str, a: object, b: object, same: bool):
    """`same_value` follows the contract's comparison rules, field by field."""
    assert same_value(field, a, b) is same
    assert same_value(field, b, a) is same


def test_norm_strips_unicode_white_space_only():
    """Trimming removes Unicode White_Space, not the information separators Python's strip() also takes."""
    assert norm("email", "\x1cA@b") == "\x1ca@b"
    assert norm("email", "\x85A@b\u2029") == "a@b"
    assert pl.Series([vocab.WHITESPACE]).str.strip_chars().item() == ""


def _vector_changed(field: str, old: list[object], new: list[object], dtype: pl.DataType) -> list[bool]:
    frame = pl.DataFrame({"old": old, "new": new}, schema={"old": dtype, "new": dtype})
    return frame.select(changed_expr(field, pl.col("old"), pl.col("new")).alias("c")).get_column("c").to_list()


_texts = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "Ada", "ada", " ADA ", "ß", "SS", "İ", "ΑΣ", "\x1c", "\u3000x"]),
    # Polars' Unicode tables are newer than this Python's: characters Python does not know yet ("Cn")
    # lower-case differently there, and no real name holds them.
    st.text(alphabet=st.characters(exclude_categories=("Cs", "Cn")), max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(_TEXT_FIELDS),
    pairs=st.lists(st.tuples(_texts, _texts), min_size=1, max_size=20),
)
def test_planner_comparison_agrees_with_same_value_for_text(field: str, pairs: list[tuple[str | None, str | None]]):
    """The vectorised comparison the planner runs says "changed" exactly where `same_value` says "not same"."""
    old, new = [a for a, _ in pairs], [b for _, b in pairs]
    got = _vector_changed(field, list(old), list(new), pl.String())
    assert got == [not same_value(field, a, b) for a, b in pairs]


_names = st.lists(st.sampled_from(["a", "b", "c", " a", "A"]), max_size=4)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.none() | _names, st.none() | _names), min_size=1, max_size=20))
def test_planner_comparison_agrees_with_same_value_for_sets(pairs: list[tuple[list[str] | None, list[str] | None]]):
    """Lists compare as sets, null as the empty set, in both the vectorised and the per-value comparison."""
    old, new = [a for a, _ in pairs], [b for _, b in pairs]
    got = _vector_changed("secondary_groups", list(old), list(new), pl.List(pl.String()))
    assert got == [not same_value("secondary_groups", a, b) for a, b in pairs]


@pytest.mark.parametrize("field", ["confidential", "active"])
def test_planner_comparison_agrees_with_same_value_for_flags(field: str):
    """Flags: every pair of true/false/null compares the same way vectorised and per value."""
    values: list[bool | None] = [True, False, None]
    pairs = [(a, b) for a in values for b in values]
    got = _vector_changed(field, [a for a, _ in pairs], [b for _, b in pairs], pl.Boolean())
    assert got == [not same_value(field, a, b) for a, b in pairs]


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.none() | _names, st.none() | _names), min_size=1, max_size=20))
def test_canonical_set_comparison_agrees_with_same_value(pairs: list[tuple[list[str] | None, list[str] | None]]):
    """The planner's shortcut for lists it already sorted and deduplicated agrees with `same_value`."""
    canon = [None if v is None else sorted(set(v)) for pair in pairs for v in pair]
    old, new = canon[0::2], canon[1::2]
    frame = pl.DataFrame({"old": old, "new": new}, schema={"old": pl.List(pl.String()), "new": pl.List(pl.String())})
    got = frame.select(changed_expr("secondary_groups", pl.col("old"), pl.col("new"), canonical=True).alias("c"))
    assert got.get_column("c").to_list() == [
        not same_value("secondary_groups", a, b) for a, b in zip(old, new, strict=True)
    ]


def test_before_retirement_round_trips_only_the_cleared_values() -> None:
    """A retired user's licences go into the journal detail and come back out; other details give nothing."""
    detail = vocab.before_retirement({"user_plan": "Sales Premium", "confidential": True, "title": "x", "active": True})
    assert isinstance(detail, str)
    assert vocab.before_retirement(detail) == {"user_plan": "Sales Premium", "confidential": True}
    assert vocab.before_retirement({"user_plan": None, "confidential": False}) is None
    assert vocab.before_retirement("read-back differs from the plan: title") is None
    assert vocab.before_retirement('before retirement: {"title": "x"}') == {}
    assert vocab.before_retirement("before retirement: not json") is None
