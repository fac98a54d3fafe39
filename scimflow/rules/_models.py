"""Typed rule sets: the YAML of ARCHITECTURE.md "Rules (contract)" as pydantic models.

Every model rejects unknown keys. Shorthands are expanded before validation: a bare value is
``{value: V, scope: always}``; a bare list (``secondary_groups``) is ``{value: [...], scope: add}``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)

from scimflow.frames import ENTRA_SCHEMA

__all__ = [
    "ELEMENTS",
    "MAPPED_FIELDS",
    "MAX_GRACE",
    "DeprovisionGrace",
    "DeprovisionMode",
    "Elements",
    "FlagSetting",
    "ListSetting",
    "Mapping",
    "MatchKey",
    "Rule",
    "RuleSet",
    "RuleTest",
    "TextSetting",
    "When",
    "parse_duration",
]

MatchKey = Literal["entra_id", "user_name", "email"]
DeprovisionMode = Literal["retire", "remove_plan", "ignore"]
#: The longest grace period ``deprovision: {after: ...}`` may give.
MAX_GRACE = dt.timedelta(days=3650)
_DURATION = re.compile(r"([1-9][0-9]{0,5})([dh])")
_DURATION_PATTERN = r"^[1-9][0-9]{0,5}[dh]$"
Scope = Literal["always", "if_not_set"]
ListScope = Literal["always", "if_not_set", "add"]
Name = Annotated[StrictStr, Field(min_length=1, pattern=r"^[^\x00-\x1f]*$")]

#: Mapped fields, in the order they appear in plans.
MAPPED_FIELDS: tuple[str, ...] = (
    "user_name",
    "first_name",
    "last_name",
    "email",
    "title",
    "mobile_phone",
    "display_name",  # a SCIM target's displayName (SuperOffice's Web API has no such field)
)
#: Rule elements.
ELEMENTS: tuple[str, ...] = ("user_plan", "role", "primary_group", "secondary_groups", "owner_company", "confidential")

_DEFAULT_MATCH: tuple[MatchKey, ...] = ("entra_id", "user_name", "email")
DEFAULT_MAPPING: dict[str, str] = {
    "user_name": "userPrincipalName",
    "first_name": "givenName",
    "last_name": "surname",
    "email": "coalesce(mail, userPrincipalName)",
    "title": "jobTitle",
    "mobile_phone": "mobilePhone",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TextSetting(_Strict):
    """A text element (a SuperOffice display name) and how it combines with earlier rules."""

    value: Name
    scope: Scope = "always"


class FlagSetting(_Strict):
    """A yes/no element (``confidential``)."""

    value: StrictBool
    scope: Scope = "always"


class ListSetting(_Strict):
    """A list element (``secondary_groups``); ``add`` (the default) unions with earlier rules."""

    value: list[Name]
    scope: ListScope = "add"


def _shorthand(v: Any) -> Any:
    if isinstance(v, dict) or v is None:
        return v
    return {"value": v, "scope": "always"}


def _list_shorthand(v: Any) -> Any:
    if isinstance(v, list):
        return {"value": v, "scope": "add"}
    if isinstance(v, str):
        return {"value": [v], "scope": "add"}
    return v


class Elements(_Strict):
    """What a rule sets: any of the six elements."""

    user_plan: TextSetting | None = None
    role: TextSetting | None = None
    primary_group: TextSetting | None = None
    secondary_groups: ListSetting | None = None
    owner_company: TextSetting | None = None
    confidential: FlagSetting | None = None

    _s = field_validator("user_plan", "role", "primary_group", "owner_company", "confidential", mode="before")(
        _shorthand
    )
    _l = field_validator("secondary_groups", mode="before")(_list_shorthand)

    def items(self) -> list[tuple[str, TextSetting | ListSetting | FlagSetting]]:
        """The elements this rule sets, in :data:`ELEMENTS` order."""
        out: list[tuple[str, TextSetting | ListSetting | FlagSetting]] = []
        for name in ELEMENTS:
            setting = getattr(self, name)
            if setting is not None:
                out.append((name, setting))
        return out


GroupRef = Name | Annotated[list[Name], Field(min_length=1)]


class When(_Strict):
    """A rule's condition; the keys given combine with AND."""

    all_: StrictBool | None = Field(None, alias="all")
    in_group: GroupRef | None = None
    not_in_group: GroupRef | None = None
    expr: Name | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> When:
        if self.all_ is None and self.in_group is None and self.not_in_group is None and self.expr is None:
            msg = "give at least one of all, in_group, not_in_group, expr"
            raise ValueError(msg)
        return self

    def group_refs(self) -> list[tuple[str, list[str]]]:
        """``(key, [names or ids])`` for ``in_group`` / ``not_in_group``."""
        out = []
        for key in ("in_group", "not_in_group"):
            v = getattr(self, key)
            if v is not None:
                out.append((key, [v] if isinstance(v, str) else list(v)))
        return out


class Rule(_Strict):
    """One rule: when its condition holds, it brings the user in scope and sets its elements."""

    name: Name
    when: When
    set_: Elements = Field(default_factory=Elements, alias="set")
    enabled: StrictBool = True


class Mapping(_Strict):
    """Mapped attributes: Polars SQL expressions over the Graph attributes (always applied)."""

    user_name: Name
    first_name: Name | None = None
    last_name: Name | None = None
    email: Name | None = None
    title: Name | None = None
    mobile_phone: Name | None = None
    #: Only for ``target: scim`` (the SCIM ``displayName``; the default there is Entra's ``displayName``).
    display_name: Name | None = None

    def items(self) -> list[tuple[str, str]]:
        """``(field, expression)`` of the fields mapped, in :data:`MAPPED_FIELDS` order."""
        return [(f, e) for f in MAPPED_FIELDS if (e := getattr(self, f)) is not None]


_TEST_USER_KEYS = frozenset(ENTRA_SCHEMA.names())
_TEST_EXPECT_KEYS = frozenset((*ELEMENTS, *MAPPED_FIELDS, "rules", "in_scope"))


class RuleTest(_Strict):
    """A ``rules test`` case: a user's Graph attributes and the expected outcome."""

    name: str | None = None
    user: dict[str, Any]
    expect: dict[str, Any]

    @field_validator("user")
    @classmethod
    def _user_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - _TEST_USER_KEYS)
        if unknown:
            msg = f"unknown Graph attribute(s) {', '.join(unknown)}"
            raise ValueError(msg)
        return v

    @field_validator("expect")
    @classmethod
    def _expect_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - _TEST_EXPECT_KEYS)
        if unknown:
            msg = f"unknown expectation(s) {', '.join(unknown)}; use elements, mapped fields, rules or in_scope"
            raise ValueError(msg)
        return v


def parse_duration(text: str) -> dt.timedelta:
    """``7d`` (days) or ``12h`` (hours) as a timedelta; ValueError (saying what is accepted) otherwise."""
    m = _DURATION.fullmatch(text) if len(text) <= 8 else None
    if m is None:
        msg = f"{text[:20]!r} is not a grace period: give a whole number of days or hours from 1, e.g. 7d, 30d or 12h"
        raise ValueError(msg)
    n = int(m.group(1))
    delta = dt.timedelta(days=n) if m.group(2) == "d" else dt.timedelta(hours=n)
    if delta > MAX_GRACE:
        msg = f"{text!r} is longer than the longest grace period ({MAX_GRACE.days}d)"
        raise ValueError(msg)
    return delta


class DeprovisionGrace(_Strict):
    """``deprovision: {action: retire | remove_plan, after: 7d}``: deprovision only once a user has been
    due for it for ``after`` (a grace period; back in scope before then, nothing happens)."""

    action: Literal["retire", "remove_plan"]
    after: Annotated[StrictStr, Field(max_length=8, json_schema_extra={"pattern": _DURATION_PATTERN})]

    @field_validator("after")
    @classmethod
    def _after(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def delta(self) -> dt.timedelta:
        """The grace period."""
        return parse_duration(self.after)


def _deprovision_kind(v: Any) -> str:
    return "grace[action, after]" if isinstance(v, dict | DeprovisionGrace) else "mode[str]"


#: ``retire`` | ``remove_plan`` | ``ignore``, or the grace form. The tags hold ``[`` so that error locations
#: (``deprovision.after``) read as the file does (the loader drops union-branch names).
Deprovision = Annotated[
    Annotated[DeprovisionMode, Tag("mode[str]")] | Annotated[DeprovisionGrace, Tag("grace[action, after]")],
    Discriminator(_deprovision_kind),
]


class RuleSet(_Strict):
    """A whole rule file. Build it with :func:`scimflow.rules.load_rules` (keeps file and lines)."""

    version: Literal[1]
    match: Annotated[list[MatchKey], Field(min_length=1)] = Field(default_factory=lambda: list(_DEFAULT_MATCH))
    mapping: Mapping = Field(default_factory=lambda: Mapping.model_validate(DEFAULT_MAPPING))
    deprovision: Deprovision = "retire"
    rules: Annotated[list[Rule], Field(min_length=1)]
    tests: list[RuleTest] = Field(default_factory=list)

    _source: str | None = PrivateAttr(default=None)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    def problems(self) -> list[tuple[tuple[str | int, ...], str | None, str]]:
        """Consistency problems pydantic cannot see: ``(path, rule name, message)`` each."""
        out: list[tuple[tuple[str | int, ...], str | None, str]] = []
        if len(set(self.match)) != len(self.match):
            out.append((("match",), None, "match: each key at most once"))
        if "email" in self.match and self.mapping.email is None and "match" in self.model_fields_set:
            out.append((("match",), None, "match uses email but the mapping has no email"))
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                out.append((("rules", i, "name"), rule.name, "another rule has this name; names must be unique"))
            seen.add(rule.name)
        return out

    @property
    def deprovision_action(self) -> DeprovisionMode:
        """What deprovisioning does (``retire``, ``remove_plan`` or ``ignore``), with or without a grace period."""
        d = self.deprovision
        return d if isinstance(d, str) else d.action

    @property
    def grace(self) -> dt.timedelta | None:
        """The grace period of ``deprovision: {action, after}``; ``None`` when deprovisioning is immediate."""
        return None if isinstance(self.deprovision, str) else self.deprovision.delta

    @property
    def source(self) -> str | None:
        """The file the rules came from, if any."""
        return self._source

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """The line of ``path`` or of its nearest enclosing value that has one."""
        for n in range(len(path), -1, -1):
            line = self._lines.get(path[:n])
            if line is not None:
                return line
        return None

    def enabled_rules(self) -> list[tuple[int, Rule]]:
        """``(index in the file, rule)`` of the enabled rules, in file order."""
        return [(i, r) for i, r in enumerate(self.rules) if r.enabled]
