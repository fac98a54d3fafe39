"""A deterministic generated tenant in the fixture format, for the bench and ``python -m`` runs.

``scimflow/emulators/generate.py`` (owned elsewhere) is the project's generator for demos; this one is
small and local so the Graph emulator can be exercised on its own: ``n_users`` users with every
property of :data:`scimflow.frames.GRAPH_USER_FIELDS`, ``n_groups`` groups of varied sizes (each user
is a direct member of one to three groups), and every fifth group nested in the one before it.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

__all__ = ["generate_tenant"]

_GIVEN = ("Kari", "Ola", "Sara", "Nils", "Ingrid", "Lars", "Emma", "Jonas", "Maja", "Erik", "Sofie", "Henrik")
_SUR = ("Nordmann", "Hansen", "Lind", "Berg", "Dahl", "Olsen", "Larsen", "Strand", "Moen", "Holm", "Lie", "Vik")
_DEPTS = ("Sales", "Support", "Finance", "HR", "Engineering", "Marketing", "Legal", "Operations")
_TITLES = ("Sales Manager", "Account Executive", "Support Agent", "Engineer", "Analyst", "Consultant", "Director")
_COUNTRIES = (("NO", "Oslo", "Contoso AS"), ("SE", "Stockholm", "Contoso AB"), ("DK", "Copenhagen", "Contoso ApS"))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate_tenant(n_users: int, n_groups: int = 10, *, seed: int = 1, domain: str = "contoso.com") -> dict[str, Any]:
    """A tenant of ``n_users`` users and ``n_groups`` groups (fixture format), the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - test data
    users: list[dict[str, Any]] = []
    for i in range(n_users):
        given, sur = rng.choice(_GIVEN), rng.choice(_SUR)
        country, city, company = rng.choice(_COUNTRIES)
        upn = f"{given}.{sur}.{i}@{domain}".lower()
        users.append(
            {
                "id": _uuid(rng),
                "userPrincipalName": upn,
                "mail": upn if rng.random() > 0.05 else None,
                "displayName": f"{given} {sur}",
                "givenName": given,
                "surname": sur,
                "jobTitle": rng.choice(_TITLES),
                "department": rng.choice(_DEPTS),
                "accountEnabled": rng.random() > 0.03,
                "employeeId": str(100000 + i),
                "employeeType": "Employee" if rng.random() > 0.1 else "Contractor",
                "mobilePhone": f"+47 9{i % 10_000_000:07d}" if rng.random() > 0.3 else None,
                "businessPhones": [f"+47 22 {i % 1_000_000:06d}"] if rng.random() > 0.5 else [],
                "country": country,
                "city": city,
                "companyName": company,
                "officeLocation": city,
                "usageLocation": country,
                "userType": "Member" if rng.random() > 0.02 else "Guest",
            }
        )
    groups: list[dict[str, Any]] = [
        {"id": _uuid(rng), "displayName": f"Group {g:03d}", "members": []} for g in range(n_groups)
    ]
    if groups:
        # Skewed sizes: low-numbered groups are large (like "Employees"), later ones small.
        weights = [1.0 / (g + 1) for g in range(n_groups)]
        for user in users:
            for g in set(rng.choices(range(n_groups), weights=weights, k=rng.randint(1, 3))):
                groups[g]["members"].append(user["id"])
        for g in range(1, n_groups):
            if g % 5 == 0:
                groups[g - 1]["members"].append(groups[g]["id"])
    return {"users": users, "groups": groups}
