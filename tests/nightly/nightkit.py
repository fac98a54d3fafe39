"""Helpers of the nightly tests: budgets, the emulators' ``/_emulator/`` endpoints, SuperOffice user state."""

from __future__ import annotations

import ssl

import httpx

from tests.flows.flowkit import Tenant

__all__ = ["WIDE", "active", "graph", "graph_stats", "so_reset_counters"]

#: Budgets the worked example stays within (4 changes, one of them a retirement).
WIDE = {"max_retire": "100%", "max_changes": 500, "min_source_users": 1, "max_source_drop": "20%"}


def graph(tenant: Tenant) -> httpx.Client:
    """An HTTPS client on the Graph emulator's origin (its ``/_emulator/`` endpoints need no auth)."""
    ctx = ssl.create_default_context(cafile=str(tenant.host.ca_bundle))
    return httpx.Client(base_url=tenant.host.graph_origin, verify=ctx, timeout=30)


def graph_stats(tenant: Tenant) -> dict[str, int]:
    """The Graph emulator's request counters since the last reset."""
    with graph(tenant) as c:
        return dict(c.get("/_emulator/stats").json())


def so_reset_counters(tenant: Tenant) -> None:
    """Zero the SuperOffice emulator's counters (``writes`` among them)."""
    ctx = ssl.create_default_context(cafile=str(tenant.host.ca_bundle))
    with httpx.Client(base_url=tenant.host.superoffice_origin, verify=ctx, timeout=30) as c:
        c.post("/_emulator/reset-counters").raise_for_status()


def active(tenant: Tenant, user_name: str) -> bool:
    """Whether the SuperOffice user with this UserName exists and is not retired."""
    users = tenant.users_by_name().get(user_name, [])
    return len(users) == 1 and not users[0]["Deleted"]
