"""Validate task: Pandera checks of both frames, invalid Entra users to quarantine."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from scimflow import pipeline

__all__ = ["validate_users"]


@task(name="validate-users", cache_policy=NO_CACHE)
def validate_users(entra: pipeline.EntraExtract, so: pipeline.TargetExtract) -> pipeline.Validated:
    """Check both frames; quarantine invalid Entra users with a reason."""
    result = pipeline.validate_extracts(entra, so)
    get_run_logger().info("validated: %d quarantined", result.quarantine.height)
    return result
