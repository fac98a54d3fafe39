"""A deterministic generated SuperOffice tenant in the fixture format (S.json), for benches and demos.

(The shared ``scimflow/emulators/generate.py`` builds matching Graph + SuperOffice pairs; this one only
needs to be big and plausible: plans, roles, groups, companies, a few retired and system users.)
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["generate_tenant"]

_FIRST = ["Kari", "Ola", "Sara", "Nils", "Anna", "Lars", "Eva", "Per", "Ingrid", "Jonas", "Maria", "Erik"]
_LAST = ["Nordmann", "Lind", "Berg", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Dahl", "Moe"]
ROLES = ["Administrator", "Sales", "Support", "Manager", "User"]
GROUPS = ["Fallback group", "Sales Norway", "Support", "Marketing", "Management"]
PLANS = [
    ("ten-sales", "Sales Premium"),
    ("ten-service", "Service Premium"),
    ("ten-marketing", "Marketing Premium"),
    ("superlicense-no-selection", "Not selected"),
]
CONTACTS = ["Contoso AS", "Contoso AB", "Contoso Oy", "Contoso A/S"]


def generate_tenant(users: int, *, seed: int = 1) -> dict[str, Any]:
    """``users`` users (about 1 in 50 retired, 1 in 500 a system user) with persons, plans and groups."""
    rnd = random.Random(seed)  # noqa: S311 - test data
    out: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for i in range(users):
        aid, pid = 100 + i, 10_000 + i
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        initials = first[0] + last[0]
        names[initials] = names.get(initials, 0) + 1
        name = initials if names[initials] == 1 else f"{initials}{names[initials]}"
        system = i % 500 == 499
        retired = not system and rnd.random() < 0.02
        plan = rnd.choice(PLANS)
        licences = [] if retired or system else [{"Name": plan[0], "Description": plan[1], "Assigned": True}]
        if not retired and not system and rnd.random() < 0.1:
            licences.append({"Name": "visible-for", "Description": "Confidential activities", "Assigned": True})
        role = 1 if system else rnd.randint(2, len(ROLES))
        group = rnd.randint(1, len(GROUPS))
        others = sorted(rnd.sample(range(1, len(GROUPS) + 1), rnd.randint(0, 2)))
        out.append(
            {
                "AssociateId": aid,
                "Name": name,
                "UserName": f"{first}.{last}.{i}@contoso.com".lower(),
                "Type": "SystemAssociate" if system else "InternalAssociate",
                "Deleted": retired,
                "Role": {"Id": role, "Value": ROLES[role - 1]},
                "UserGroup": {"Id": group, "Value": GROUPS[group - 1]},
                "OtherGroups": [{"Id": g, "Value": GROUPS[g - 1]} for g in others if g != group],
                "LicenseOwners": [
                    {
                        "Name": "SuperOffice",
                        "Description": "SuperOffice CRM",
                        "RestrictedModuleLicenses": licences,
                        "UnrestrictedModuleLicenses": [],
                    }
                ],
                "Person": None
                if system
                else {
                    "PersonId": pid,
                    "Firstname": first,
                    "Lastname": last,
                    "Email": f"{first}.{last}.{i}@contoso.com".lower(),
                    "Title": rnd.choice(["Sales Rep", "Support Agent", "Manager", None]),
                    "MobilePhone": f"+47 9{i:07d}" if rnd.random() < 0.7 else None,
                    "ContactId": rnd.randint(1, len(CONTACTS)),
                },
            }
        )
    return {
        "users": out,
        "roles": [{"Id": i, "Value": v} for i, v in enumerate(ROLES, start=1)],
        "usergroups": [{"Id": i, "Value": v} for i, v in enumerate(GROUPS, start=1)],
        "userplans": [{"Name": n, "Description": d} for n, d in PLANS],
        "contacts": [{"ContactId": i, "Name": v} for i, v in enumerate(CONTACTS, start=1)],
    }
