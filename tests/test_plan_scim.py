"""Planning for a SCIM target (scimflow.plan.plan_scim): fixed matching, computed groups, group rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from scimflow.computed_groups import groups_for
from scimflow.connectors.scim import SCIM_GROUPS_SCHEMA, SCIM_USERS_SCHEMA
from scimflow.plan import frames_from_fixtures, plan_scim
from scimflow.rules import RuleError, load_rules

FIXTURES = Path(__file__).parent / "fixtures"
KARI = "6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001"
OLA = "6f1c0002-2b3a-4c5d-9e8f-0a1b2c3d0002"
SARA = "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"
PER = "6f1c0004-2b3a-4c5d-9e8f-0a1b2c3d0004"

#: What the rules give each in-scope user of the worked example (its mapped fields and elements).
KARI_VALUES = {
    "user_name": "kari.nordmann@contoso.com",
    "first_name": "Kari",
    "last_name": "Nordmann",
    "email": "kari.nordmann@contoso.com",
    "title": "Sales Manager",
    "mobile_phone": "+47 900 00 001",
    "display_name": "Kari Nordmann",
    "role": "Manager",
    "primary_group": "Fallback group",
    "owner_company": "Contoso AS",
    "user_plan": "Sales Premium",
    "secondary_groups": ["Sales Norway"],
}


@pytest.fixture(scope="module")
def entra() -> pl.DataFrame:
    graph = json.loads((FIXTURES / "graph.json").read_text())
    frame, _, _ = frames_from_fixtures(graph, json.loads((FIXTURES / "superoffice.json").read_text()))
    return frame


def _user(partner_id: str, values: dict[str, Any], *, entra_id: str | None = None, active: bool = True) -> dict:
    groups = sorted(groups_for("scimflow", values))
    return {
        "partner_id": partner_id,
        "entra_id": entra_id,
        "active": active,
        "retired": not active,
        "display_name": None,
        "version": None,
        "groups": groups,
        "confidential": None,
        **{k: values.get(k) for k in SCIM_USERS_SCHEMA.names() if k in values},
    }


def _frames(*users: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = pl.DataFrame(list(users), schema=SCIM_USERS_SCHEMA) if users else pl.DataFrame(schema=SCIM_USERS_SCHEMA)
    members: dict[str, list[str]] = {}
    for u in users:
        for g in u["groups"]:
            members.setdefault(g, []).append(u["partner_id"])
    groups = pl.DataFrame(
        [
            {
                "partner_id": f"g-{name}",
                "display_name": name,
                "external_id": name,
                "element": name.split(":")[1],
                "value": name.split(":", 2)[2],
                "members": m,
            }
            for name, m in members.items()
        ],
        schema=SCIM_GROUPS_SCHEMA,
    )
    return frame, groups


def _rows(plan) -> dict[tuple[str, str], dict]:
    return {
        (r["action"], r["key"]): {**r, "changes": json.loads(r["changes"])} for r in plan.rows.iter_rows(named=True)
    }


def test_initial_push_creates_users_and_their_computed_groups(entra: pl.DataFrame) -> None:
    """An empty SCIM target: every in-scope user is a create, every element value a group to create."""
    users, groups = _frames()
    plan = plan_scim(entra, users, groups, load_rules(FIXTURES / "rules.yaml"))
    rows = _rows(plan)
    assert plan.counts["create"] == 3 and plan.counts["out_of_scope"] == 1  # sara is disabled: not created
    assert plan.counts["create_group"] == 7 and plan.counts["members_added"] == 13
    assert rows[("create_group", "scimflow:role:Manager")]["changes"] == {
        "members_added": {"from": None, "to": ["kari.nordmann@contoso.com"]}
    }
    assert rows[("create_group", "scimflow:secondary_groups:Sales Norway")]["changes"]["members_added"]["to"] == [
        "kari.nordmann@contoso.com",
        "ola.hansen@contoso.com",
    ]
    assert rows[("create", "kari.nordmann@contoso.com")]["changes"]["role"] == {"from": None, "to": "Manager"}


def test_unknown_values_do_not_quarantine(entra: pl.DataFrame, tmp_path: Path) -> None:
    """Values the tenant may not have are the gateway's to resolve: no user is quarantined for them."""
    rules = (FIXTURES / "rules.yaml").read_text().replace("Sales Premium", "A plan nobody has")
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    plan = plan_scim(entra, *_frames(), load_rules(path))
    assert plan.counts["quarantine"] == 0
    assert ("create_group", "scimflow:user_plan:A plan nobody has") in _rows(plan)


def test_an_element_change_moves_the_user_between_groups(entra: pl.DataFrame) -> None:
    """Kari's role read from her groups is Sales: the update moves her from role:Sales to role:Manager only."""
    kari = _user("k1", {**KARI_VALUES, "role": "Sales"}, entra_id=KARI)
    plan = plan_scim(entra, *_frames(kari), load_rules(FIXTURES / "rules.yaml"))
    rows = _rows(plan)
    update = rows[("update", "kari.nordmann@contoso.com")]
    assert update["associate_id"] == "k1"
    assert update["changes"] == {"role": {"from": "Sales", "to": "Manager"}}
    assert rows[("update_group", "scimflow:role:Sales")]["changes"] == {  # ola is created with role Sales
        "members_added": {"from": None, "to": ["ola.hansen@contoso.com"]},
        "members_removed": {"from": ["kari.nordmann@contoso.com"], "to": None},
    }
    assert rows[("update_group", "scimflow:role:Sales")]["associate_id"] == "g-scimflow:role:Sales"
    assert rows[("create_group", "scimflow:role:Manager")]["changes"]["members_added"]["to"] == [
        "kari.nordmann@contoso.com"
    ]
    assert plan.counts["members_removed"] == 1


def test_matching_is_link_then_user_name_then_external_id(entra: pl.DataFrame) -> None:
    """A stored link wins over userName, userName over externalId; an externalId pair is a new link."""
    renamed = _user("by-link", {**KARI_VALUES, "user_name": "kari.old@contoso.com"})
    ola_by_name = _user("by-name", {**KARI_VALUES, "user_name": "Ola.Hansen@contoso.com"})
    ola_by_ext = _user("by-ext", {**KARI_VALUES, "user_name": "somebody.else@contoso.com"}, entra_id=OLA)
    per_by_ext = _user("per-ext", {"user_name": "p.berg@legacy.example"}, entra_id=PER.upper())
    links = pl.DataFrame({"entra_id": [KARI], "associate_id": ["by-link"]})
    plan = plan_scim(
        entra, *_frames(renamed, ola_by_name, ola_by_ext, per_by_ext), load_rules(FIXTURES / "rules.yaml"), links
    )
    rows = _rows(plan)
    assert rows[("update", "kari.nordmann@contoso.com")]["associate_id"] == "by-link"
    assert rows[("update", "kari.nordmann@contoso.com")]["changes"]["user_name"] == {
        "from": "kari.old@contoso.com",
        "to": "kari.nordmann@contoso.com",
    }
    assert rows[("update", "ola.hansen@contoso.com")]["associate_id"] == "by-name"
    assert rows[("update", "per.berg@contoso.com")]["associate_id"] == "per-ext"
    assert plan.counts["create"] == 0 and plan.counts["unmanaged"] == 1  # by-ext: nobody's partner, untouched
    pairs = set(plan.matched_pairs.iter_rows())
    assert (PER, "per-ext") in pairs and (OLA, "by-name") in pairs
    assert plan.matched_pairs.schema["associate_id"] == pl.String


def test_leavers_are_deactivated_and_keep_their_groups(entra: pl.DataFrame, tmp_path: Path) -> None:
    """A disabled user's partner gets active false (also under remove_plan) and no membership change."""
    sara = _user("s1", {"user_name": "sara.lind@contoso.com", "role": "User"}, entra_id=SARA)
    for mode in ("retire", "remove_plan"):
        path = tmp_path / f"{mode}.yaml"
        path.write_text((FIXTURES / "rules.yaml").read_text().replace("deprovision: retire", f"deprovision: {mode}"))
        plan = plan_scim(entra, *_frames(sara), load_rules(path))
        rows = _rows(plan)
        assert rows[("retire", "sara.lind@contoso.com")]["changes"] == {"active": {"from": True, "to": False}}
        assert not any(action.endswith("_group") and "sara" in str(r["changes"]) for (action, _), r in rows.items())


def test_a_returning_user_is_reactivated_with_the_same_groups(entra: pl.DataFrame) -> None:
    """A deactivated partner of an in-scope user is reactivated; its groups already say its values."""
    kari = _user("k1", KARI_VALUES, entra_id=KARI, active=False)
    plan = plan_scim(entra, *_frames(kari), load_rules(FIXTURES / "rules.yaml"))
    rows = _rows(plan)
    assert rows[("reactivate", "kari.nordmann@contoso.com")]["changes"] == {"active": {"from": False, "to": True}}
    assert not any(action.endswith("_group") and "kari" in str(r["changes"]) for (action, _), r in rows.items())


def test_a_converged_target_plans_nothing(entra: pl.DataFrame) -> None:
    """SCIM users and groups exactly as the rules give them: no row at all."""
    ola = {
        **KARI_VALUES,
        "user_name": "Ola.Hansen@contoso.com",
        "first_name": "Ola",
        "last_name": "Hansen",
        "email": "ola.hansen@contoso.com",
        "title": "Account Executive",
        "mobile_phone": None,
        "role": "Sales",
        "display_name": "Ola Hansen",
    }
    per = {
        "user_name": "per.berg@contoso.com",
        "first_name": "Per",
        "last_name": "Berg",
        "email": "per.berg@contoso.com",
        "display_name": "Per Berg",
        "title": "HR Advisor",
        "role": "User",
        "primary_group": "Fallback group",
        "owner_company": "Contoso AS",
    }
    users = [_user("k1", KARI_VALUES, entra_id=KARI), _user("o1", ola, entra_id=OLA), _user("p1", per, entra_id=PER)]
    plan = plan_scim(entra, *_frames(*users), load_rules(FIXTURES / "rules.yaml"))
    assert plan.rows.is_empty(), plan.rows
    assert plan.counts["unchanged"] == 3


def test_the_preview_lists_computed_groups_apart(entra: pl.DataFrame) -> None:
    """The preview counts group rows and lists each computed group with its members, not among the users."""
    from scimflow.apply import PlanRow
    from scimflow.preview import approval_description, preview_markdown

    plan = plan_scim(entra, *_frames(), load_rules(FIXTURES / "rules.yaml"))
    rows = [PlanRow.model_validate({**r, "changes": json.loads(r["changes"])}) for r in plan.rows.iter_rows(named=True)]
    summary = {**plan.counts, "plan_hash": "ab" * 32, "guardrails": {"verdict": "ok", "held": [], "reasons": []}}
    text = preview_markdown(summary, rows, plan_dir="/plans/x")
    assert "| create_group | 7 |" in text and "| members_added | 13 |" in text
    assert "**Computed groups** (7;" in text
    line = next(x for x in text.splitlines() if x.startswith("| scimflow\\:primary\\_group\\:Fallback group"))
    assert "| create | 3: kari\\.nordmann\\@contoso\\.com" in line and "… (+0)" not in line
    users = text.split("**Riskiest changes first**")[1].split("**Computed groups**")[0]
    assert "create\\_group" not in users
    assert "groups: create_group 7, update_group 0, members_added 13" in approval_description(
        summary, plan_dir="/plans/x", preview_key="k"
    )


def test_display_name_is_refused_for_the_web_api(tmp_path: Path) -> None:
    """SuperOffice's Web API has no display name: mapping one is an error naming the file and line."""
    from scimflow.commands.plan_cmd import run_plan_offline

    rules = (
        (FIXTURES / "rules.yaml")
        .read_text()
        .replace("  title: jobTitle\n", "  title: jobTitle\n  display_name: displayName\n")
    )
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    with pytest.raises(RuleError, match=r"rules\.yaml:9: mapping display_name: only a SCIM target"):
        build_plan_from_fixtures(path)
    assert run_plan_offline(FIXTURES / "graph.json", FIXTURES / "superoffice.json", path, tmp_path / "out") == 1


def build_plan_from_fixtures(rules: Path) -> None:
    from scimflow.plan import build_plan

    graph = json.loads((FIXTURES / "graph.json").read_text())
    entra, so, ref = frames_from_fixtures(graph, json.loads((FIXTURES / "superoffice.json").read_text()))
    build_plan(entra, so, ref, load_rules(rules))
