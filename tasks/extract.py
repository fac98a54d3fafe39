"""Extract tasks: read both systems (I/O, so a small coarse retry on top of the connectors' own)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from scimflow import pipeline
from scimflow.config import Config

__all__ = ["extract_entra_users", "extract_target_users"]


@task(name="extract-entra-users", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def extract_entra_users(config: Config, full: bool = False) -> pipeline.EntraExtract:
    """Read the whole Entra tenant (a delta against the stored baseline when there is one)."""
    store = pipeline.open_store(config)
    try:
        result = pipeline.extract_entra(config, store, full=full)
    finally:
        store.close()
    get_run_logger().info(
        "Entra: %d users (%s read)%s",
        result.source_users,
        "full" if result.full_read else "delta",
        f"; {result.note}" if result.note else "",
    )
    return result


@task(
    name="extract-target-users",
    task_run_name="extract-{config.target}-users",
    retries=1,
    retry_delay_seconds=10,
    cache_policy=NO_CACHE,
)
def extract_target_users(config: Config, entra: pipeline.EntraExtract) -> pipeline.TargetExtract:
    """Read the target's users: SuperOffice's users and reference lists, or a SCIM provider's users and
    computed groups (``entra`` names whom to look up where a SCIM server refuses listing)."""
    if config.target != "scim":
        so = pipeline.extract_superoffice(config)
        get_run_logger().info("SuperOffice: %d users", so.users.height)
        return so
    store = pipeline.open_store(config)
    try:
        result = pipeline.extract_scim(config, store, entra)
    finally:
        store.close()
    get_run_logger().info("SCIM: %d users, %d computed groups", result.users.height, result.groups.height)
    return result
