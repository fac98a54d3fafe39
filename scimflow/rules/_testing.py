"""The ``tests:`` block of a rule set: each test user through the compiled rules, all in one frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from scimflow.frames import ENTRA_SCHEMA
from scimflow.rules._compiler import CompiledRules, compile_rules
from scimflow.rules._models import ELEMENTS, RuleSet

__all__ = ["TestOutcome", "run_rule_tests"]


@dataclass(frozen=True)
class TestOutcome:
    """One test's result: ``problems`` lists each expectation that did not hold."""

    __test__ = False  # not a pytest class

    index: int
    name: str
    line: int | None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.problems


def _user_row(i: int, user: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ENTRA_SCHEMA.names())
    row.update({"id": f"test-{i + 1}", "accountEnabled": True, "groups": [], "group_ids": []})
    row.update(user)
    for key in ("groups", "group_ids", "businessPhones"):
        if isinstance(row[key], str):
            row[key] = [row[key]]
    for key, dtype in ENTRA_SCHEMA.items():
        if dtype == pl.String and row[key] is not None and not isinstance(row[key], str):
            row[key] = str(row[key])
    return row


def _same(element: str, got: Any, want: Any) -> bool:
    if element in {"secondary_groups", "rules"} and isinstance(got, list) and isinstance(want, list):
        return sorted(got) == sorted(want) if element == "secondary_groups" else got == want
    if element == "secondary_groups" and isinstance(want, str):
        return isinstance(got, list) and got == [want]
    return bool(got == want)


def run_rule_tests(rules: RuleSet, compiled: CompiledRules | None = None) -> list[TestOutcome]:
    """Evaluate every test in ``rules.tests`` and compare with its ``expect``.

    Expectation keys: an element (its final value; null when no firing rule sets it), a mapped field,
    ``rules`` (the names of the rules that fired, in order) or ``in_scope``.
    """
    if not rules.tests:
        return []
    compiled = compiled or compile_rules(rules)
    frame = pl.DataFrame([_user_row(i, t.user) for i, t in enumerate(rules.tests)], schema=ENTRA_SCHEMA, strict=False)
    result = compiled.evaluate(frame.lazy()).collect()
    outcomes = []
    for i, (test, row) in enumerate(zip(rules.tests, result.iter_rows(named=True), strict=True)):
        problems = []
        for key, want in test.expect.items():
            if key in ELEMENTS:
                got = row[f"el_{key}"] if row[f"set_{key}"] else None
            elif key in {"rules", "in_scope"}:
                got = row[key]
            else:
                got = row.get(f"map_{key}")
            if not _same(key, got, want):
                problems.append(f"{key}: expected {want!r}, got {got!r}")
        name = test.name or str(test.user.get("userPrincipalName") or f"test {i + 1}")
        outcomes.append(TestOutcome(i, name, rules.line_of(("tests", i)), problems))
    return outcomes
