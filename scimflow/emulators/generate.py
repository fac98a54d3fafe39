"""Generated tenants for the emulators and the demo: ``scimflow emulate --users N --seed S``.

:func:`generate_tenant` returns a Graph tenant (``G.json``) and a SuperOffice tenant (``S.json``) in the
fixture formats of ARCHITECTURE.md (Emulator fixtures), deterministic per seed. The Entra side has
Nordic and English names, unique UPNs, departments, job titles (with managers), contractors and some
disabled accounts, and the groups the default rules use, nested (``SO Sales`` contains ``Sales Oslo``;
``All Staff`` contains ``Employees`` and ``Contractors``). The SuperOffice side already has some of those
users: some identical to what the default rules would produce, some differing, some retired, a few
matchable only by e-mail, plus users with no Entra partner and one system user.

Per-user work is vectorised with Polars (random draws come from :class:`random.Random` so a seed means
the same tenant everywhere), so a million users take seconds, not minutes.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl

__all__ = ["GROUP_NAMES", "generate_tenant"]

#: Every group a generated tenant has (display names). Rules refer to these.
GROUP_NAMES: tuple[str, ...] = (
    "Employees",
    "Contractors",
    "SO Sales",
    "Sales Oslo",
    "SO Support",
    "SO Marketing",
    "Managers",
    "HR",
    "Finance",
    "IT",
    "All Staff",
)

_FIRST = (
    "Kari", "Ola", "Sara", "Per", "Ingrid", "Lars", "Åse", "Bjørn", "Øystein", "Sølvi", "Jørgen", "Kristin",
    "Magnus", "Nora", "Emma", "Jonas", "Håkon", "Ragnhild", "Sigrid", "Tor", "Anders", "Karin", "Björn",
    "Märta", "Göran", "Linnéa", "Åsa", "Erik", "Johan", "Maja", "Søren", "Mette", "Frederik", "Ida", "Mikko",
    "Aino", "Jussi", "Päivi", "Olivia", "James", "Emily", "Daniel", "Sophie", "Thomas", "Hanna", "Liv",
    "Astrid", "Even", "Eirik", "Vilde", "Tuva", "Sander", "Mathias", "Julie", "Camilla", "Henrik", "Marius",
    "Stine", "Trond", "Gunnhild",
)  # fmt: skip
_LAST = (
    "Nordmann", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen", "Dahl", "Jørgensen",
    "Halvorsen", "Lund", "Sørensen", "Strøm", "Bråten", "Ødegård", "Lindqvist", "Åberg", "Öberg",
    "Söderberg", "Lind", "Svensson", "Gustafsson", "Nyström", "Virtanen", "Mäkinen", "Korhonen", "Smith",
    "Brown", "Wilson", "Taylor", "Moe", "Bakke", "Solberg", "Lie", "Aas", "Fjeld", "Rønning", "Myhre",
    "Holm", "Vik",
)  # fmt: skip
_FOLD = {"å": "a", "ø": "o", "æ": "ae", "ö": "o", "ä": "a", "é": "e", "ü": "u", "Å": "A", "Ø": "O", "Æ": "Ae",
         "Ö": "O", "Ä": "A", "É": "E", "Ü": "U"}  # fmt: skip

# department, weight, plain titles, manager title
_DEPARTMENTS: tuple[tuple[str, int, tuple[str, ...], str], ...] = (
    ("Sales", 30, ("Account Executive", "Sales Representative", "Key Account Manager"), "Sales Manager"),
    ("Support", 20, ("Support Agent", "Support Specialist"), "Support Manager"),
    ("Marketing", 10, ("Marketing Coordinator", "Content Specialist"), "Marketing Manager"),
    ("HR", 5, ("HR Advisor", "Recruiter"), "HR Manager"),
    ("Finance", 10, ("Accountant", "Controller"), "Finance Manager"),
    ("IT", 10, ("Developer", "System Administrator"), "IT Manager"),
    ("Operations", 15, ("Operations Analyst", "Coordinator"), "Operations Manager"),
)
# country, weight, company, contact id, phone prefix, cities
_COUNTRIES: tuple[tuple[str, int, str, int, str, tuple[str, ...]], ...] = (
    ("NO", 50, "Contoso AS", 2, "+47 9", ("Oslo", "Oslo", "Bergen", "Trondheim")),
    ("SE", 25, "Contoso AB", 3, "+46 70", ("Stockholm", "Göteborg")),
    ("DK", 15, "Contoso ApS", 4, "+45 2", ("København",)),
    ("FI", 10, "Contoso Oy", 5, "+358 40", ("Helsinki",)),
)

_ROLES = [{"Id": i, "Value": v} for i, v in enumerate(("Administrator", "Sales", "Support", "Manager", "User"), 1)]
_USERGROUPS = [
    {"Id": i, "Value": v}
    for i, v in enumerate(
        ("Fallback group", "Sales Norway", "Support", "Marketing", "Sales Sweden", "Management", "Managers"), 1
    )
]
_USERPLANS = [
    {"Name": "ten-sales", "Description": "Sales Premium"},
    {"Name": "ten-service", "Description": "Service Premium"},
    {"Name": "ten-marketing", "Description": "Marketing Premium"},
    {"Name": "superlicense-no-selection", "Description": "Not selected"},
]
_CONTACTS = [{"ContactId": c[3], "Name": c[2]} for c in _COUNTRIES]
_PLAN_OF_DEPT = {"Sales": "ten-sales", "Support": "ten-service", "Marketing": "ten-marketing"}
_ROLE_OF_DEPT = {"Sales": "Sales", "Support": "Support"}


_ROLE_ID = {r["Value"]: r["Id"] for r in _ROLES}
_GROUP_ID = {g["Value"]: g["Id"] for g in _USERGROUPS}
_PLAN_DESC = {p["Name"]: p["Description"] for p in _USERPLANS}


def _role(name: str) -> dict[str, Any]:
    return {"Id": _ROLE_ID[name], "Value": name}


def _group(name: str) -> dict[str, Any]:
    return {"Id": _GROUP_ID[name], "Value": name}


def _licenses(plan: str | None, *, confidential: bool = False) -> list[dict[str, Any]]:
    # Fresh objects per user: an emulator may change one user's licences in place.
    restricted = []
    if plan is not None:
        restricted.append({"Name": plan, "Description": _PLAN_DESC[plan], "Assigned": True})
    if confidential:
        restricted.append({"Name": "visible-for", "Description": "Confidential activities", "Assigned": True})
    return [
        {
            "Name": "SuperOffice",
            "Description": "SuperOffice CRM",
            "RestrictedModuleLicenses": restricted,
            "UnrestrictedModuleLicenses": [],
        }
    ]


def _fold(expr: pl.Expr) -> pl.Expr:
    """ASCII-fold Nordic letters (for UPNs and short names)."""
    return expr.str.replace_many(list(_FOLD), list(_FOLD.values()))


def _pick(rng: random.Random, n: int, weights: list[int]) -> list[int]:
    return rng.choices(range(len(weights)), weights=weights, k=n)


def _entra_frame(
    n: int, seed: int, rng: random.Random, domain: str, *, disabled: float, contractors: float
) -> pl.DataFrame:
    """One row per Entra user, every attribute vectorised."""
    dept_titles = [list(d[2]) for d in _DEPARTMENTS]
    cols = {
        "i": list(range(n)),
        "fi": rng.choices(range(len(_FIRST)), k=n),
        "li": rng.choices(range(len(_LAST)), k=n),
        "di": _pick(rng, n, [d[1] for d in _DEPARTMENTS]),
        "ci": _pick(rng, n, [c[1] for c in _COUNTRIES]),
        "r_title": [rng.random() for _ in range(n)],
        "r_city": [rng.random() for _ in range(n)],
        "r_flags": [rng.random() for _ in range(n)],
        "r_mgr": [rng.random() for _ in range(n)],
        "r_kind": [rng.random() for _ in range(n)],
    }
    df = pl.DataFrame(cols, schema={k: (pl.Float64 if k.startswith("r_") else pl.Int64) for k in cols})
    first = pl.Series(_FIRST).gather(df["fi"])
    last = pl.Series(_LAST).gather(df["li"])
    df = df.with_columns(first=first, last=last)
    prefix = f"{(seed * 2654435761 + 0x6F1C0000) & 0xFFFFFFFF:08x}-2b3a-4c5d-9e8f-"
    dept = pl.Series([d[0] for d in _DEPARTMENTS]).gather(df["di"])
    mgr_title = pl.Series([d[3] for d in _DEPARTMENTS]).gather(df["di"])
    n_titles = pl.Series([len(t) for t in dept_titles]).gather(df["di"])
    flat_titles = [t for ts in dept_titles for t in ts]
    offsets = [sum(len(t) for t in dept_titles[:k]) for k in range(len(dept_titles))]
    title_idx = pl.Series(offsets).gather(df["di"]) + (df["r_title"] * n_titles).cast(pl.Int64)
    plain_title = pl.Series(flat_titles).gather(title_idx)
    country = pl.Series([c[0] for c in _COUNTRIES]).gather(df["ci"])
    company = pl.Series([c[2] for c in _COUNTRIES]).gather(df["ci"])
    phone_prefix = pl.Series([c[4] for c in _COUNTRIES]).gather(df["ci"])
    flat_cities = [city for c in _COUNTRIES for city in c[5]]
    coff = [sum(len(c[5]) for c in _COUNTRIES[:k]) for k in range(len(_COUNTRIES))]
    city_idx = pl.Series(coff).gather(df["ci"]) + (
        df["r_city"] * pl.Series([len(c[5]) for c in _COUNTRIES]).gather(df["ci"])
    ).cast(pl.Int64)
    city = pl.Series(flat_cities).gather(city_idx)
    df = df.with_columns(
        department=dept, mgr_title=mgr_title, plain_title=plain_title, country=country,
        companyName=company, phone_prefix=phone_prefix, city=city,
    )  # fmt: skip
    contractor = pl.col("r_kind") < contractors
    local = (_fold(pl.col("first")) + "." + _fold(pl.col("last"))).str.to_lowercase()
    df = df.with_columns(local=local, contractor=contractor)
    dup = pl.int_range(pl.len()).over("local")
    upn_local = pl.when(dup == 0).then(pl.col("local")).otherwise(pl.col("local") + (dup + 1).cast(pl.String))
    # A few UPNs keep the case people typed (matching is case-insensitive).
    upn_local = (
        pl.when(pl.col("r_flags") > 0.98)
        .then(pl.col("first").str.slice(0, 1).str.to_uppercase() + upn_local.str.slice(1))
        .otherwise(upn_local)
    )
    upn = _fold(upn_local) + ("@" + domain)
    is_mgr = ~pl.col("contractor") & (pl.col("r_mgr") < 0.08)
    digits = pl.col("i").cast(pl.String).str.zfill(7)
    df = df.with_columns(
        id=pl.lit(prefix) + (pl.col("i") + 1).cast(pl.String).str.zfill(12),
        userPrincipalName=upn,
        is_mgr=is_mgr,
    ).with_columns(
        mail=pl.when(pl.col("r_flags") < 0.05).then(None).otherwise(pl.col("userPrincipalName").str.to_lowercase()),
        displayName=pl.col("first") + " " + pl.col("last"),
        givenName=pl.col("first"),
        surname=pl.col("last"),
        jobTitle=pl.when(pl.col("contractor"))
        .then(pl.lit("Consultant"))
        .when(pl.col("is_mgr"))
        .then(pl.col("mgr_title"))
        .otherwise(pl.col("plain_title")),
        accountEnabled=~((pl.col("r_flags") >= 0.5) & (pl.col("r_flags") < 0.5 + disabled)),
        employeeId=pl.when(pl.col("contractor")).then(None).otherwise((pl.col("i") + 100001).cast(pl.String)),
        employeeType=pl.when(pl.col("contractor")).then(pl.lit("Contractor")).otherwise(pl.lit("Employee")),
        mobilePhone=pl.when(pl.col("r_city") * 10 % 1 < 0.6)
        .then(pl.col("phone_prefix") + " " + digits)
        .otherwise(None),
        businessPhones=pl.when(pl.col("r_title") * 10 % 1 < 0.3)
        .then(pl.concat_list(pl.col("phone_prefix") + "0 " + digits))
        .otherwise(pl.lit([], dtype=pl.List(pl.String))),
        officeLocation=pl.col("city"),
        usageLocation=pl.col("country"),
        userType=pl.lit("Member"),
    )
    return df


_GRAPH_COLUMNS = (
    "id", "userPrincipalName", "mail", "displayName", "givenName", "surname", "jobTitle", "department",
    "accountEnabled", "employeeId", "employeeType", "mobilePhone", "businessPhones", "country", "city",
    "companyName", "officeLocation", "usageLocation", "userType",
)  # fmt: skip


def _groups(df: pl.DataFrame, seed: int) -> list[dict[str, Any]]:
    prefix = f"{(seed * 2246822519 + 0xA0B00000) & 0xFFFFFFFF:08x}-1111-4222-8333-"
    ids = {name: prefix + str(k + 1).zfill(12) for k, name in enumerate(GROUP_NAMES)}

    def members(expr: pl.Expr) -> list[str]:
        return df.filter(expr).get_column("id").to_list()

    employee = ~pl.col("contractor")
    sales = pl.col("department") == "Sales"
    oslo = pl.col("city") == "Oslo"
    direct = {
        "Employees": members(employee),
        "Contractors": members(pl.col("contractor")),
        "SO Sales": [ids["Sales Oslo"], *members(sales & ~oslo)],
        "Sales Oslo": members(sales & oslo),
        "SO Support": members(pl.col("department") == "Support"),
        "SO Marketing": members(pl.col("department") == "Marketing"),
        "Managers": members(pl.col("is_mgr")),
        "HR": members(pl.col("department") == "HR"),
        "Finance": members(pl.col("department") == "Finance"),
        "IT": members(pl.col("department") == "IT"),
        "All Staff": [ids["Employees"], ids["Contractors"]],
    }
    return [{"id": ids[name], "displayName": name, "members": direct[name]} for name in GROUP_NAMES]


def _so_user(
    associate_id: int,
    name: str,
    user_name: str,
    person: dict[str, Any] | None,
    *,
    role: str,
    group: str,
    other: list[str],
    plan: str | None,
    deleted: bool = False,
    user_type: str = "InternalAssociate",
    confidential: bool = False,
) -> dict[str, Any]:
    return {
        "AssociateId": associate_id,
        "Name": name,
        "UserName": user_name,
        "Type": user_type,
        "Deleted": deleted,
        "Role": _role(role),
        "UserGroup": _group(group),
        "OtherGroups": [_group(g) for g in other],
        "LicenseOwners": _licenses(plan, confidential=confidential),
        "Person": person,
    }


def _superoffice(
    df: pl.DataFrame,
    rng: random.Random,
    domain: str,
    *,
    matched: float,
    differing: float,
    retired: float,
    unpartnered: int,
) -> dict[str, Any]:
    """SuperOffice users for a share of the Entra users, plus orphans and a system user."""
    n = df.height
    draws = [rng.random() for _ in range(n)]
    kinds = [rng.random() for _ in range(n)]
    picked = df.select(
        "first", "last", "userPrincipalName", "mail", "jobTitle", "department", "mobilePhone", "is_mgr",
        "ci", "contractor",
    ).with_columns(draw=pl.Series(draws), kind=pl.Series(kinds)).filter(
        (pl.col("draw") < matched) & ~pl.col("contractor")
    )  # fmt: skip
    short = (_fold(pl.col("first")).str.slice(0, 1) + _fold(pl.col("last")).str.slice(0, 1)).str.to_uppercase()
    picked = picked.with_columns(short=short).with_columns(
        short=pl.when(pl.int_range(pl.len()).over("short") == 0)
        .then(pl.col("short"))
        .otherwise(pl.col("short") + (pl.int_range(pl.len()).over("short") + 1).cast(pl.String)),
        legacy=(_fold(pl.col("first")).str.slice(0, 1) + _fold(pl.col("last"))).str.to_uppercase(),
    )
    users: list[dict[str, Any]] = []
    next_id = 100
    contact_ids = [c[3] for c in _COUNTRIES]
    email_only = differing * 0.1
    legacy_taken: dict[str, int] = {}  # old logins are unique too: a repeated one gets a number
    for k, r in enumerate(picked.iter_rows(named=True)):
        kind = r["kind"]
        dept = r["department"]
        plan: str | None = _PLAN_OF_DEPT.get(dept, "superlicense-no-selection")
        role = "Manager" if r["is_mgr"] else _ROLE_OF_DEPT.get(dept, "User")
        group = "Support" if dept == "Support" else "Fallback group"
        other = ["Sales Norway"] if dept == "Sales" else []
        person = {
            "PersonId": 10_000 + k,
            "Firstname": r["first"],
            "Lastname": r["last"],
            "Email": r["mail"] or r["userPrincipalName"],
            "Title": r["jobTitle"],
            "MobilePhone": r["mobilePhone"],
            "ContactId": contact_ids[r["ci"]],
        }
        user_name = r["userPrincipalName"]
        deleted = False
        if kind < retired:
            deleted, plan, other = True, None, []
        elif kind < retired + email_only:
            taken = legacy_taken[r["legacy"]] = legacy_taken.get(r["legacy"], 0) + 1
            user_name = r["legacy"] if taken == 1 else f"{r['legacy']}{taken}"  # an old login: only the e-mail matches
        elif kind < retired + differing:
            which = int(kind * 1000) % 3
            if which == 0:
                person["Title"] = "Trainee"
            elif which == 1:
                person["MobilePhone"] = "+47 400 00 000"
                role = "User"
            else:
                person["Lastname"] = "Olsen-" + str(r["last"])
                plan = "superlicense-no-selection"
        users.append(
            _so_user(next_id, r["short"], user_name, person, role=role, group=group, other=other, plan=plan,
                     deleted=deleted, confidential=dept == "HR")
        )  # fmt: skip
        next_id += 1
    # Users nobody in Entra matches: former staff (half retired) on an old domain.
    for k in range(unpartnered):
        first, last = _FIRST[rng.randrange(len(_FIRST))], _LAST[rng.randrange(len(_LAST))]
        local = "".join(_FOLD.get(ch, ch) for ch in f"{first}.{last}".lower())
        person = {
            "PersonId": 900_000 + k,
            "Firstname": first,
            "Lastname": last,
            "Email": f"{local}.{k}@old.{domain}",
            "Title": "Former employee",
            "MobilePhone": None,
            "ContactId": 2,
        }
        users.append(
            _so_user(next_id, f"X{k + 1}", f"{local}.{k}@old.{domain}", person, role="User", group="Fallback group",
                     other=[], plan=None if k % 2 else "superlicense-no-selection", deleted=bool(k % 2))
        )  # fmt: skip
        next_id += 1
    users.append(
        _so_user(next_id, "SYS", f"integration@{domain}", None, role="Administrator", group="Fallback group",
                 other=[], plan=None, user_type="SystemAssociate")
    )  # fmt: skip
    return {
        "users": users,
        "roles": [dict(r) for r in _ROLES],
        "usergroups": [dict(g) for g in _USERGROUPS],
        "userplans": [dict(p) for p in _USERPLANS],
        "contacts": [dict(c) for c in _CONTACTS],
    }


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building millions of small dicts (none of them cyclic) would
    otherwise trigger full collections over an ever larger heap, which dominates the run time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def generate_tenant(
    users: int,
    seed: int = 0,
    *,
    matched_fraction: float = 0.3,
    differing_fraction: float = 0.3,
    retired_fraction: float = 0.05,
    disabled_fraction: float = 0.03,
    contractor_fraction: float = 0.08,
    unpartnered_users: int | None = None,
    domain: str = "contoso.com",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generate a Graph tenant and a SuperOffice tenant in the fixture formats (``G.json``, ``S.json``).

    Args:
        users: Entra users to generate (0 or more).
        seed: the same seed gives the same tenant.
        matched_fraction: share of Entra employees that already have a SuperOffice user.
        differing_fraction: share of those whose SuperOffice user differs (a tenth of them match only by
            e-mail, through an old login name); the rest are identical apart from ``retired_fraction``.
        retired_fraction: share of matched SuperOffice users that are retired.
        disabled_fraction: share of Entra accounts that are disabled.
        contractor_fraction: share of Entra users that are contractors (not in ``Employees``).
        unpartnered_users: SuperOffice users with no Entra partner (default: 2 % of ``users``, at least 1).
        domain: the UPN and e-mail domain.

    Returns:
        ``(graph, superoffice)``: plain dicts, ready for ``json.dump`` or an emulator.
    """
    if users < 0:
        msg = f"users must be 0 or more, not {users}"
        raise ValueError(msg)
    for name, value in (
        ("matched_fraction", matched_fraction),
        ("differing_fraction", differing_fraction),
        ("retired_fraction", retired_fraction),
        ("disabled_fraction", disabled_fraction),
        ("contractor_fraction", contractor_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            msg = f"{name} must be between 0 and 1, not {value}"
            raise ValueError(msg)
    if differing_fraction + retired_fraction > 1.0:
        msg = "differing_fraction + retired_fraction must not exceed 1"
        raise ValueError(msg)
    with _no_gc():
        return _generate(users, seed, domain, matched_fraction, differing_fraction, retired_fraction,
                         disabled_fraction, contractor_fraction, unpartnered_users)  # fmt: skip


def _generate(
    users: int,
    seed: int,
    domain: str,
    matched_fraction: float,
    differing_fraction: float,
    retired_fraction: float,
    disabled_fraction: float,
    contractor_fraction: float,
    unpartnered_users: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible per seed; nothing secret
    df = _entra_frame(users, seed, rng, domain, disabled=disabled_fraction, contractors=contractor_fraction)
    columns = [df.get_column(c).to_list() for c in _GRAPH_COLUMNS]
    graph = {"users": [dict(zip(_GRAPH_COLUMNS, row, strict=True)) for row in zip(*columns, strict=True)],
             "groups": _groups(df, seed)}  # fmt: skip
    orphans = unpartnered_users if unpartnered_users is not None else max(1, users // 50)
    so = _superoffice(
        df, rng, domain, matched=matched_fraction, differing=differing_fraction, retired=retired_fraction,
        unpartnered=orphans,
    )  # fmt: skip
    return graph, so
