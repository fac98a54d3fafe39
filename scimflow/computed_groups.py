"""Computed groups: how scimflow's rules reach a SCIM target that can only test group membership.

SuperOffice's Identity Management Gateway (IMG) decides a user's plan, role, groups, owner company and
confidentiality with rules of the form "in group G → set element = value". scimflow keeps the rules its own
(ordered, expressive, tested) and expresses their *result* as membership of one group per (element, value):
``{prefix}:{element}:{value}``, e.g. ``scimflow:role:Sales``; ``true``/``false`` for ``confidential``; one
group per ``secondary_groups`` entry. The group's ``displayName`` and ``externalId`` are both that name, so
an IMG rule keyed on it never breaks (ARCHITECTURE.md, "SCIM target (contract)").

The admin enters one IMG rule per computed group once (:func:`img_rules`, ``scimflow scim img-rules``);
from then on scimflow only changes memberships. Values are not resolved against SuperOffice's lists here:
the IMG resolves them, so the listing names every value for the admin to check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scimflow.rules import ELEMENTS, RuleSet

__all__ = [
    "ELEMENT_LABELS",
    "ImgRule",
    "group_name",
    "groups_for",
    "img_rules",
    "membership_delta",
    "parse_group_name",
    "rule_values",
    "values_from_groups",
]

#: The element as SuperOffice's Identity Manager names it in a rule's "set" column.
ELEMENT_LABELS: dict[str, str] = {
    "user_plan": "User plan",
    "role": "Role",
    "primary_group": "Primary group",
    "secondary_groups": "Secondary group",
    "owner_company": "Owner company",
    "confidential": "Confidential",
}
_SEP = ":"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def group_name(prefix: str, element: str, value: Any) -> str:
    """``{prefix}:{element}:{value}``, the computed group of one element value (``true``/``false`` for flags)."""
    if element not in ELEMENT_LABELS:
        msg = f"unknown element {element!r}; one of {', '.join(ELEMENTS)}"
        raise ValueError(msg)
    return f"{prefix}{_SEP}{element}{_SEP}{_text(value)}"


def parse_group_name(prefix: str, name: str) -> tuple[str, Any] | None:
    """``(element, value)`` of a computed group's name, or ``None`` for any other group.

    The value is everything after the second separator (a display name may itself contain ``:``);
    ``confidential`` parses to a bool.
    """
    head = f"{prefix}{_SEP}"
    if not name.startswith(head):
        return None
    element, sep, value = name[len(head) :].partition(_SEP)
    if not sep or element not in ELEMENT_LABELS or value == "":
        return None
    if element == "confidential":
        if value not in ("true", "false"):
            return None
        return element, value == "true"
    return element, value


def groups_for(prefix: str, values: Mapping[str, Any]) -> set[str]:
    """The computed groups a user with these element values belongs to (unset elements: no group)."""
    out: set[str] = set()
    for element in ELEMENTS:
        value = values.get(element)
        if value is None:
            continue
        if element == "secondary_groups":
            out.update(group_name(prefix, element, v) for v in value or [])
        else:
            out.add(group_name(prefix, element, value))
    return out


def membership_delta(prefix: str, current: Iterable[str], changed: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """``(groups to join, groups to leave)`` for a user in ``current`` groups whose elements in ``changed``
    (``{element: new value}``) change: it leaves those elements' groups and joins the new values' groups; its
    other memberships (other elements, groups that are not computed) stay."""
    old = set(current)
    keep = {g for g in old if (parsed := parse_group_name(prefix, g)) is None or parsed[0] not in changed}
    new = keep | groups_for(prefix, changed)
    return new - old, old - new


def values_from_groups(prefix: str, names: Iterable[str]) -> dict[str, Any]:
    """Element values as a user's computed-group memberships say them (the inverse of :func:`groups_for`).

    Elements with no group are ``None`` (``secondary_groups``: an empty list is ``None`` too, as "nothing
    set"); a single-valued element in two groups at once (a change interrupted half-way) reads as both names
    joined, a value no rule gives, so the planner plans an update that leaves exactly one.
    """
    found: dict[str, list[Any]] = {}
    for name in names:
        parsed = parse_group_name(prefix, name)
        if parsed is not None:
            found.setdefault(parsed[0], []).append(parsed[1])
    out: dict[str, Any] = dict.fromkeys(ELEMENTS)
    for element, vals in found.items():
        if element == "secondary_groups":
            out[element] = sorted({str(v) for v in vals})
        elif len(vals) == 1:
            out[element] = vals[0]
        else:
            out[element] = ", ".join(sorted(_text(v) for v in vals))
    return out


def rule_values(rules: RuleSet) -> dict[str, list[Any]]:
    """Every value each element can take under ``rules`` (enabled rules, file order, each value once)."""
    out: dict[str, list[Any]] = {e: [] for e in ELEMENTS}
    for _, rule in rules.enabled_rules():
        for element, setting in rule.set_.items():
            values = setting.value if isinstance(setting.value, list) else [setting.value]
            for v in values:
                if v not in out[element]:
                    out[element].append(v)
    return out


@dataclass(frozen=True)
class ImgRule:
    """One rule to enter in Identity Manager: users in ``group`` get ``element`` = ``value``."""

    group: str
    element: str
    value: Any
    rules: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The element as Identity Manager names it."""
        return ELEMENT_LABELS[self.element]

    def as_json(self) -> dict[str, Any]:
        """The rule as one JSON object (``scope``/``group`` are the IMG's condition, ``set`` its action)."""
        return {
            "name": self.group,
            "scope": "in_group",
            "group": self.group,
            "set": {"element": self.label, "value": self.value},
            "scimflow_element": self.element,
            "from_rules": list(self.rules),
        }


def img_rules(rules: RuleSet, prefix: str) -> list[ImgRule]:
    """The IMG rules for ``rules``: one per computed group, elements in :data:`ELEMENTS` order."""
    setters: dict[tuple[str, str], list[str]] = {}
    for _, rule in rules.enabled_rules():
        for element, setting in rule.set_.items():
            for v in setting.value if isinstance(setting.value, list) else [setting.value]:
                names = setters.setdefault((element, _text(v)), [])
                if rule.name not in names:
                    names.append(rule.name)
    out: list[ImgRule] = []
    for element, values in rule_values(rules).items():
        for v in values:
            out.append(ImgRule(group_name(prefix, element, v), element, v, setters.get((element, _text(v)), [])))
    return out
