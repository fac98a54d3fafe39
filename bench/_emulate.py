"""The bench's emulator process: both emulators (``EmulatorHost``) with the bench's fixed settings.

    python -m bench._emulate --folder DIR --users N --tenant creates|matched [--latency 0.02] [--rps 25]

Generates the tenant, serves Graph and SuperOffice over loopback HTTPS with ``latency`` (seconds per
request, both emulators) and ``rate_limit_rps`` (SuperOffice, the write target), writes ``DIR/scimflow.yaml``
and ``DIR/entra-ids.txt`` (the Entra user ids, for the nightly scenarios' mutations), prints one JSON line
(``graph``, ``superoffice``, ``config``) and serves until stdin closes. It is a separate process from the
pipeline, so the pipeline's peak RSS is its own.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "tenant"]

#: Guardrails that hold nothing back: the bench measures the apply, not the guardrails.
OPEN_GUARDRAILS: dict[str, Any] = {"max_retire": "100%", "max_changes": 100_000_000, "min_source_users": 0,
                                   "max_source_drop": "100%"}


def tenant(kind: str, users: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``creates``: no SuperOffice partner for anyone (every valid in-scope user is a create); ``matched``:
    the same Entra tenant with every valid user already in SuperOffice exactly as the default rules would
    create it (an initial sync that only links, and nightly runs with nothing to do unless Entra changes)."""
    from scimflow.emulators.generate import generate_tenant

    graph, so = generate_tenant(users, seed, matched_fraction=0.0, disabled_fraction=0.0, unpartnered_users=0)
    if kind == "creates":
        return graph, so
    if kind == "matched":
        return graph, _converged(graph, so)
    msg = f"unknown tenant kind {kind!r}"
    raise ValueError(msg)


def _converged(graph: dict[str, Any], so: dict[str, Any]) -> dict[str, Any]:
    """``so`` plus, for every create the default rules plan, the SuperOffice user that create would make."""
    import polars as pl

    from scimflow.emulators.host import DEFAULT_RULES
    from scimflow.pipeline import validate
    from scimflow.plan import build_plan, frames_from_fixtures
    from scimflow.rules import load_rules

    entra, so_frame, ref = frames_from_fixtures(graph, so)
    checked = validate(entra, so_frame)
    plan = build_plan(entra, so_frame, ref, load_rules(DEFAULT_RULES), quarantine=checked.quarantine)
    creates = plan.rows.filter(pl.col("action") == "create").get_column("changes").to_list()
    roles = {r["Value"]: r for r in so["roles"]}
    groups = {g["Value"]: g for g in so["usergroups"]}
    licence = {p["Description"]: p["Name"] for p in so["userplans"]}
    contacts = {c["Name"]: c["ContactId"] for c in so["contacts"]}
    next_id = 1 + max((int(u["AssociateId"]) for u in so["users"]), default=100)
    made: list[dict[str, Any]] = []
    for i, text in enumerate(creates):
        to = {k: v.get("to") for k, v in json.loads(text).items()}
        restricted = [{"Name": licence[to["user_plan"]], "Description": to["user_plan"], "Assigned": True}] \
            if to.get("user_plan") else []
        if to.get("confidential"):
            restricted.append({"Name": "visible-for", "Description": "Confidential activities", "Assigned": True})
        made.append({
            "AssociateId": next_id + i, "Name": f"B{i}", "UserName": to["user_name"], "Type": "InternalAssociate",
            "Deleted": False,
            "Role": dict(roles[to["role"]]) if to.get("role") else None,
            "UserGroup": dict(groups[to["primary_group"]]) if to.get("primary_group") else None,
            "OtherGroups": [dict(groups[g]) for g in to.get("secondary_groups") or []],
            "LicenseOwners": [{"Name": "SuperOffice", "Description": "SuperOffice CRM",
                               "RestrictedModuleLicenses": restricted, "UnrestrictedModuleLicenses": []}],
            "Person": {"PersonId": 500_000 + i, "Firstname": to.get("first_name"), "Lastname": to.get("last_name"),
                       "Email": to.get("email"), "Title": to.get("title"), "MobilePhone": to.get("mobile_phone"),
                       "ContactId": contacts.get(to.get("owner_company") or "")},
        })
    return {**so, "users": [*so["users"], *made]}


def main(argv: list[str] | None = None) -> int:
    from scimflow.emulators.host import EmulatorHost

    p = argparse.ArgumentParser(prog="python -m bench._emulate")
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--tenant", choices=["creates", "matched"], required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--rps", type=float, default=None, help="SuperOffice rate limit (requests per second)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    graph, so = tenant(args.tenant, args.users, args.seed)
    args.folder.mkdir(parents=True, exist_ok=True)
    (args.folder / "entra-ids.txt").write_text("\n".join(u["id"] for u in graph["users"]), encoding="utf-8")
    so_settings: dict[str, Any] = {"latency": args.latency}
    if args.rps:
        so_settings["rate_limit_rps"] = args.rps
    host = EmulatorHost(
        graph, so, args.folder, graph_settings={"latency": args.latency}, superoffice_settings=so_settings,
        state_url=f"sqlite:///{args.folder / 'state.db'}", guardrails=OPEN_GUARDRAILS,
    )
    del graph, so
    with host:
        # The loaded tenants (10,000s of objects) live as long as the process: frozen, the collector's full
        # passes skip them (each one otherwise stopped the emulators' event loops for ~130 ms at 10k users).
        gc.collect()
        gc.freeze()
        info = {"graph": host.graph_origin, "superoffice": host.superoffice_origin, "config": str(host.config_path),
                "ca_bundle": str(host.ca_bundle), "startup_s": round(time.perf_counter() - t0, 2)}
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        sys.stdin.read()  # serve until the harness closes our stdin
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
