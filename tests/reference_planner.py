"""A reference planner: ARCHITECTURE.md's Rules and Matching contracts, written for clarity, not speed.

Written from the contract's text alone, in plain Python over dicts and lists, without Polars and without
looking at ``scimflow.rules`` / ``scimflow.plan`` (independence is the point: the property tests compare
the two). Where the contract is silent, the choice made here is marked ``DECISION`` so a disagreement
can be traced to a sentence or to a gap.

Inputs:
    entra       Entra users: Graph attributes plus ``groups`` (display names) and ``group_ids``.
    so          SuperOffice users with the ``frames.SO_SCHEMA`` field names.
    ref         element → set of valid display names (``role``, ``primary_group``, ``secondary_groups``,
                ``user_plan``, ``owner_company``).
    rules       the rule set as parsed YAML (``match``, ``mapping``, ``deprovision``, ``rules``).
    links       Entra id → SuperOffice associate id (the state store's links).
    quarantine  Entra id → reason (rows that failed validation).

Supported rule language (the subset the tests use): mapping values are a bare Graph attribute or
``coalesce(a, b, ...)``; conditions ``all``, ``in_group``, ``not_in_group`` (name, id or list) and ``expr``
with ``attr = 'x'``, ``attr <> 'x'``, ``attr IN ('a', 'b')``, ``attr LIKE '%x%'``, ``attr IS [NOT] NULL``,
``array_contains(groups, 'X')``, combined with ``AND``/``OR``/``NOT`` and parentheses, in SQL's
three-valued logic (a comparison with NULL is NULL; NULL counts as false only for the final verdict).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIONS",
    "COUNTS",
    "ReferencePlan",
    "apply_rules",
    "entra_from_fixture",
    "evaluate_expr",
    "mapped_fields",
    "ref_from_fixture",
    "reference_plan",
    "so_from_fixture",
]

ACTIONS = ("create", "update", "retire", "reactivate", "quarantine", "conflict")
COUNTS = (*ACTIONS, "unchanged", "unmanaged", "out_of_scope")
ELEMENTS = ("user_plan", "role", "primary_group", "secondary_groups", "owner_company", "confidential")
LIST_ELEMENTS = ("secondary_groups",)
CASE_INSENSITIVE_FIELDS = ("user_name", "email")  # compared trimmed and case-insensitively by update
MATCH_FIELDS = {"user_name": "user_name", "email": "email"}  # match key → SuperOffice field


@dataclass
class ReferencePlan:
    """Plan rows (sorted by key then entra_id) and the nine summary counts."""

    rows: list[dict[str, Any]]
    counts: dict[str, int]
    situations: list[str] = field(default_factory=list)  # one label per user decided, for coverage checks


def norm(value: Any) -> str | None:
    """A matching key: trimmed and lower-cased; blank or missing is no key."""
    if value is None:
        return None
    key = str(value).strip().lower()
    return key or None


# --- expressions -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)|(?P<op><>|!=|=|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z_0-9]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "IS", "NULL", "TRUE", "FALSE"}


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse expression at {text[pos:]!r}")
        pos = match.end()
        if match.group("string") is not None:
            tokens.append(("str", match.group("string")[1:-1].replace("''", "'")))
        elif match.group("number") is not None:
            tokens.append(("str", match.group("number")))
        elif match.group("op") is not None:
            tokens.append(("op", "<>" if match.group("op") == "!=" else match.group("op")))
        else:
            word = match.group("word")
            tokens.append(("kw", word.upper()) if word.upper() in _KEYWORDS else ("name", word))
    return tokens


class _Parser:
    """Recursive descent: or := and (OR and)*; and := not (AND not)*; not := NOT not | atom."""

    def __init__(self, text: str, user: dict[str, Any]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.user = user

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: Any = None) -> Any:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise ValueError(f"expected {value or kind}, found {token}")
        self.pos += 1
        return token[1]

    def accept(self, kind: str, value: Any) -> bool:
        if self.peek() == (kind, value):
            self.pos += 1
            return True
        return False

    def parse(self) -> bool | None:
        result = self.or_()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()}")
        return result

    def or_(self) -> bool | None:
        result = self.and_()
        while self.accept("kw", "OR"):
            right = self.and_()
            result = True if result is True or right is True else (None if None in (result, right) else False)
        return result

    def and_(self) -> bool | None:
        result = self.not_()
        while self.accept("kw", "AND"):
            right = self.not_()
            result = False if result is False or right is False else (None if None in (result, right) else True)
        return result

    def not_(self) -> bool | None:
        if self.accept("kw", "NOT"):
            inner = self.not_()
            return None if inner is None else not inner
        return self.atom()

    def atom(self) -> bool | None:
        if self.accept("op", "("):
            result = self.or_()
            self.take("op", ")")
            return result
        if self.accept("kw", "TRUE"):
            return True
        if self.accept("kw", "FALSE"):
            return False
        name = self.take("name")
        if name.lower() == "array_contains":
            self.take("op", "(")
            array = self.user.get(self.take("name"))
            self.take("op", ",")
            item = self.take("str")
            self.take("op", ")")
            return None if array is None else item in array
        value = self.user.get(name)
        if self.accept("kw", "IS"):
            negate = self.accept("kw", "NOT")
            self.take("kw", "NULL")
            return (value is not None) if negate else (value is None)
        negate = self.accept("kw", "NOT")
        if self.accept("kw", "IN"):
            self.take("op", "(")
            options = [self.take("str")]
            while self.accept("op", ","):
                options.append(self.take("str"))
            self.take("op", ")")
            found = None if value is None else str(value) in options
        elif self.accept("kw", "LIKE"):
            pattern = self.take("str")
            found = None if value is None else _like(pattern, str(value))
        elif self.accept("op", "="):
            other = self.take("str")
            found = None if value is None else str(value) == other
        elif not negate and self.accept("op", "<>"):
            other = self.take("str")
            return None if value is None else str(value) != other
        else:
            raise ValueError(f"unsupported comparison after {name!r}")
        return None if found is None else (not found if negate else found)


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def evaluate_expr(text: str, user: dict[str, Any]) -> bool:
    """Evaluate a rule ``expr`` for one user; NULL counts as false (only at the end, as SQL does)."""
    return _Parser(text, user).parse() is True


# --- rules ---------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _member(user: dict[str, Any], group: str) -> bool:
    return group in (user.get("groups") or []) or group in (user.get("group_ids") or [])


def condition_matches(when: dict[str, Any], user: dict[str, Any]) -> bool:
    """All ``when`` keys combine with AND."""
    checks = []
    if "all" in when:
        checks.append(bool(when["all"]))
    if "in_group" in when:
        checks.append(any(_member(user, g) for g in _as_list(when["in_group"])))
    if "not_in_group" in when:
        checks.append(not any(_member(user, g) for g in _as_list(when["not_in_group"])))
    if "expr" in when:
        checks.append(evaluate_expr(when["expr"], user))
    return all(checks)


def _setting(element: str, spec: Any) -> tuple[Any, str]:
    """``(value, scope)`` of one ``set`` entry; a bare value is shorthand with the element's default scope."""
    default = "add" if element in LIST_ELEMENTS else "always"
    if isinstance(spec, dict):
        return spec.get("value"), spec.get("scope", default)
    return spec, default


def apply_rules(rule_set: dict[str, Any], user: dict[str, Any]) -> tuple[list[str], dict[str, Any], dict[str, str]]:
    """Matched rule names in order, final element values, and which rule set each final value."""
    names: list[str] = []
    values: dict[str, Any] = {}
    setters: dict[str, str] = {}
    for rule in rule_set.get("rules") or []:
        if not rule.get("enabled", True) or not condition_matches(rule.get("when") or {}, user):
            continue
        names.append(rule["name"])
        for element, spec in (rule.get("set") or {}).items():
            value, scope = _setting(element, spec)
            if element in LIST_ELEMENTS:
                value = list(_as_list(value))
            already = element in values
            if scope == "always" or (scope == "if_not_set" and not already) or (scope == "add" and not already):
                values[element], setters[element] = value, rule["name"]
            elif scope == "add":
                values[element] = values[element] + [v for v in value if v not in values[element]]
                setters[element] = rule["name"]
    return names, values, setters


def unknown_references(values: dict[str, Any], setters: dict[str, str], ref: dict[str, set[str]]) -> list[str]:
    """Reasons for final element values that are not in the tenant's lists (``confidential`` is a flag)."""
    problems = []
    for element, value in values.items():
        if element == "confidential":
            continue
        known = ref.get(element, set())
        for name in _as_list(value) if element in LIST_ELEMENTS else [value]:
            if name is not None and name not in known:
                problems.append(f"rule {setters[element]!r} sets {element} to unknown {name!r}")
    return problems


_COALESCE = re.compile(r"^\s*coalesce\s*\((.*)\)\s*$", re.IGNORECASE)


def map_value(expression: str, user: dict[str, Any]) -> Any:
    """A mapping expression: a Graph attribute name or ``coalesce(a, b, ...)``."""
    match = _COALESCE.match(expression)
    if match:
        for part in match.group(1).split(","):
            value = user.get(part.strip())
            if value is not None:
                return value
        return None
    return user.get(expression.strip())


def mapped_fields(rule_set: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return {target: map_value(source, user) for target, source in (rule_set.get("mapping") or {}).items()}


# --- diff ------------------------------------------------------------------------------------------------


def _same(field_name: str, old: Any, new: Any) -> bool:
    if field_name in LIST_ELEMENTS:
        return set(old or []) == set(new or []) and (old is None) == (new is None)
    if field_name in CASE_INSENSITIVE_FIELDS:
        return norm(old) == norm(new) and (old is None) == (new is None)
    return old == new


def _shown(field_name: str, value: Any) -> Any:
    return sorted(value) if field_name in LIST_ELEMENTS and value is not None else value


def diff(target: dict[str, Any], partner: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Changes from the partner's values to the target's (mapped fields and set elements only)."""
    return {
        name: {"from": _shown(name, partner.get(name)), "to": _shown(name, value)}
        for name, value in target.items()
        if not _same(name, partner.get(name), value)
    }


# --- the planner -----------------------------------------------------------------------------------------


def _key(user: dict[str, Any]) -> str:
    return norm(user.get("userPrincipalName")) or user["id"]


def _row(action: str, key: str, entra_id: str, associate_id: int | None, **rest: Any) -> dict[str, Any]:
    return {
        "action": action,
        "key": key,
        "entra_id": entra_id,
        "associate_id": associate_id,
        "rules": rest.get("rules", []),
        "changes": rest.get("changes", {}),
        "reason": rest.get("reason"),
    }


def reference_plan(
    entra: list[dict[str, Any]],
    so: list[dict[str, Any]],
    ref: dict[str, set[str]],
    rules: dict[str, Any],
    links: dict[str, int],
    quarantine: dict[str, str],
) -> ReferencePlan:
    """Plan rows and counts for the given tenants, per ARCHITECTURE.md "Matching and situations"."""
    by_id = {u["associate_id"]: u for u in so}
    internal = [u for u in so if u.get("user_type") == "InternalAssociate"]  # only these take part
    match_order = rules.get("match") or ["entra_id", "user_name", "email"]
    deprovision = rules.get("deprovision", "retire")

    # Matching: each Entra user (quarantined, disabled and out-of-scope ones too) finds its candidates.
    mapped = {u["id"]: mapped_fields(rules, u) for u in entra}
    candidates: dict[str, list[int]] = {}
    for user in entra:
        found: list[int] = []
        for method in match_order:
            if method == "entra_id":
                linked = by_id.get(links.get(user["id"]))  # type: ignore[arg-type]
                found = [linked["associate_id"]] if linked and linked.get("user_type") == "InternalAssociate" else []
            elif method in MATCH_FIELDS and method in mapped[user["id"]]:
                key = norm(mapped[user["id"]][method])
                found = [s["associate_id"] for s in internal if key is not None and norm(s.get(MATCH_FIELDS[method])) == key]
            if found:
                break
        candidates[user["id"]] = found
    found_by: dict[int, set[str]] = {}
    for entra_id, found in candidates.items():
        for associate_id in found:
            found_by.setdefault(associate_id, set()).add(entra_id)

    # "invalid (schema, duplicate UPN, unknown reference name)": a UPN shared (trimmed, case-insensitively)
    # with another Entra user is invalid here too, whether or not validation already said so.
    upn_holders: dict[str, int] = {}
    for user in entra:
        upn = norm(user.get("userPrincipalName"))
        if upn is not None:
            upn_holders[upn] = upn_holders.get(upn, 0) + 1

    rows: list[dict[str, Any]] = []
    counts = dict.fromkeys(COUNTS, 0)
    situations: list[str] = []

    def outcome(situation: str, row: dict[str, Any] | None, count: str) -> None:
        situations.append(situation)
        counts[count] += 1
        if row is not None:
            rows.append(row)

    for user in entra:
        entra_id, key = user["id"], _key(user)
        found = candidates[entra_id]
        single = found[0] if len(found) == 1 else None
        conflict = len(found) >= 2 or (single is not None and len(found_by[single]) >= 2)
        # DECISION: accountEnabled null is not "disabled" (validation quarantines it anyway).
        enabled = user.get("accountEnabled") is not False
        names, values, setters = apply_rules(rules, user) if enabled else ([], {}, {})
        in_scope = enabled and bool(names)
        problems = unknown_references(values, setters, ref) if in_scope else []
        holders = upn_holders.get(norm(user.get("userPrincipalName")) or "", 1)
        if holders > 1:
            problems.insert(0, f"duplicate userPrincipalName shared with {holders - 1} other user(s)")
        # DECISION: a schema-quarantined user is a quarantine row whatever its scope (table: "invalid | any").
        if entra_id in quarantine or problems:
            reason = quarantine.get(entra_id) or "; ".join(problems)
            outcome("quarantine", _row("quarantine", key, entra_id, single, rules=names, reason=reason), "quarantine")
            continue
        if conflict:
            why = "matches several SuperOffice users" if len(found) >= 2 else "shares its partner with another user"
            outcome("conflict", _row("conflict", key, entra_id, single, rules=names, reason=why), "conflict")
            continue
        partner = by_id[single] if single is not None else None
        if in_scope:
            target = {**mapped[entra_id], **values}
            if partner is None:
                changes = {
                    name: {"from": None, "to": _shown(name, value)} for name, value in target.items() if value is not None
                }
                outcome("create", _row("create", key, entra_id, None, rules=names, changes=changes), "create")
            elif partner.get("retired"):
                changes = diff(target, partner)
                changes["active"] = {"from": False, "to": True}
                outcome("reactivate", _row("reactivate", key, entra_id, single, rules=names, changes=changes), "reactivate")
            else:
                changes = diff(target, partner)
                if changes:
                    outcome("update", _row("update", key, entra_id, single, rules=names, changes=changes), "update")
                else:
                    outcome("unchanged", None, "unchanged")
            continue
        cause = "disabled in Entra ID" if not enabled else "out of scope: no enabled rule matches"
        if partner is None:
            outcome("out_of_scope", None, "out_of_scope")
        else:
            _deprovision(partner, key, entra_id, cause, deprovision, outcome, "disabled" if not enabled else "out")

    # Gone users: a link whose Entra id is absent from the Entra frame.
    present = {u["id"] for u in entra}
    for entra_id, associate_id in sorted(links.items()):
        partner = by_id.get(associate_id)
        if entra_id in present or partner is None or partner.get("user_type") != "InternalAssociate":
            continue  # DECISION: a link to a missing or non-internal SuperOffice user plans nothing
        if associate_id in found_by:
            continue  # DECISION: a present Entra user found this partner; it, not the stale link, decides
        key = norm(partner.get("user_name")) or entra_id
        _deprovision(partner, key, entra_id, "gone from Entra ID", deprovision, outcome, "gone")

    linked = set(links.values())
    counts["unmanaged"] = sum(1 for u in so if u["associate_id"] not in found_by and u["associate_id"] not in linked)
    rows.sort(key=lambda r: (r["key"], r["entra_id"]))
    return ReferencePlan(rows=rows, counts=counts, situations=situations)


def _deprovision(
    partner: dict[str, Any],
    key: str,
    entra_id: str,
    cause: str,
    mode: str,
    outcome: Any,
    who: str,
) -> None:
    """A disabled, out-of-scope or gone user's partner: retire per ``deprovision`` or leave it."""
    if partner.get("retired"):
        outcome(f"{who}-retired", None, "unchanged")
    elif mode == "ignore":
        outcome(f"{who}-ignore", None, "unchanged")
    elif mode == "remove_plan":
        if partner.get("user_plan") is None:
            outcome(f"{who}-no-plan", None, "unchanged")
        else:
            changes = {"user_plan": {"from": partner["user_plan"], "to": None}}
            row = _row("retire", key, entra_id, partner["associate_id"], changes=changes, reason=cause)
            outcome(f"{who}-retire", row, "retire")
    else:
        row = _row("retire", key, entra_id, partner["associate_id"], changes={"active": {"from": True, "to": False}}, reason=cause)
        outcome(f"{who}-retire", row, "retire")


# --- the emulator fixture format (ARCHITECTURE.md, "Emulator fixtures") -> planner inputs ----------------

NO_PLAN_LICENSE = "superlicense-no-selection"
CONFIDENTIAL_LICENSE = "visible-for"


def entra_from_fixture(data: dict[str, Any]) -> list[dict[str, Any]]:
    """G.json → Entra user dicts with transitive ``groups`` (names) and ``group_ids``."""
    groups = {g["id"]: g for g in data.get("groups", [])}
    direct: dict[str, set[str]] = {}  # member id → ids of the groups it is directly in
    for group in groups.values():
        for member in group.get("members", []):
            direct.setdefault(member, set()).add(group["id"])

    def transitive(member: str) -> set[str]:
        seen: set[str] = set()
        todo = list(direct.get(member, ()))
        while todo:
            group_id = todo.pop()
            if group_id not in seen:
                seen.add(group_id)
                todo.extend(direct.get(group_id, ()))
        return seen

    users = []
    for user in data.get("users", []):
        ids = sorted(transitive(user["id"]))
        users.append({**user, "group_ids": ids, "groups": sorted(groups[i]["displayName"] for i in ids)})
    return users


def so_from_fixture(data: dict[str, Any]) -> list[dict[str, Any]]:
    """S.json → SuperOffice user dicts with ``frames.SO_SCHEMA`` field names."""
    plan_order = [p["Name"] for p in data.get("userplans", [])]
    plan_names = {p["Name"]: p["Description"] for p in data.get("userplans", [])}
    companies = {c["ContactId"]: c["Name"] for c in data.get("contacts", [])}
    users = []
    for user in data.get("users", []):
        assigned = {
            lic["Name"]
            for owner in user.get("LicenseOwners") or []
            for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses")
            for lic in owner.get(kind) or []
            if lic.get("Assigned")
        }
        plan = next((name for name in plan_order if name in assigned), None)
        person = user.get("Person") or {}
        users.append(
            {
                "associate_id": user["AssociateId"],
                "name": user.get("Name"),
                "user_name": user.get("UserName"),
                "user_type": user.get("Type"),
                "retired": bool(user.get("Deleted")),
                "person_id": person.get("PersonId"),
                "first_name": person.get("Firstname"),
                "last_name": person.get("Lastname"),
                "email": person.get("Email"),
                "title": person.get("Title"),
                "mobile_phone": person.get("MobilePhone"),
                "role": (user.get("Role") or {}).get("Value"),
                "primary_group": (user.get("UserGroup") or {}).get("Value"),
                "secondary_groups": [g["Value"] for g in user.get("OtherGroups") or []],
                "owner_company": companies.get(person.get("ContactId")),
                "contact_id": person.get("ContactId"),
                "user_plan": None if plan in (None, NO_PLAN_LICENSE) else plan_names[plan],
                "confidential": CONFIDENTIAL_LICENSE in assigned,
            }
        )
    return users


def ref_from_fixture(data: dict[str, Any]) -> dict[str, set[str]]:
    """S.json → element → valid display names."""
    groups = {g["Value"] for g in data.get("usergroups", [])}
    return {
        "role": {r["Value"] for r in data.get("roles", [])},
        "primary_group": groups,
        "secondary_groups": groups,
        "user_plan": {p["Description"] for p in data.get("userplans", [])},
        "owner_company": {c["Name"] for c in data.get("contacts", [])},
    }
