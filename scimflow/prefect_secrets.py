"""Read ``prefect-secret:NAME`` references through the Prefect server's REST API (no Prefect import).

The core never imports Prefect, yet ``scimflow plan``, ``explain`` and ``doctor`` must resolve secrets
kept in Prefect Secret blocks. A Secret block document is readable at
``GET {PREFECT_API_URL}/block_types/slug/secret/block_documents/name/{name}?include_secrets=true``;
its ``data.value`` is the secret. Inside flow runs the same resolver works (Prefect sets
``PREFECT_API_URL`` for them). ``PREFECT_API_KEY`` is sent as a bearer token when set (Prefect Cloud).
"""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx

from scimflow.config import ConfigError, register_secret_resolver

__all__ = ["install", "read_prefect_secret"]


def read_prefect_secret(name: str, *, api_url: str | None = None, timeout: float = 15.0) -> str:
    """Return the value of the Prefect Secret block ``name``. Errors never include the value."""
    api = (api_url or os.environ.get("PREFECT_API_URL") or "").rstrip("/")
    if not api:
        msg = "PREFECT_API_URL is not set, so Prefect Secret blocks cannot be read here"
        raise ConfigError(msg)
    headers = {"Accept": "application/json"}
    key = os.environ.get("PREFECT_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{api}/block_types/slug/secret/block_documents/name/{quote(name, safe='')}"
    try:
        r = httpx.get(url, params={"include_secrets": "true"}, headers=headers, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        msg = f"cannot reach the Prefect API at {api} to read Secret block {name!r}: {type(exc).__name__}"
        raise ConfigError(msg) from None
    if r.status_code == 404:
        msg = f"no Prefect Secret block named {name!r} on {api}"
        raise ConfigError(msg)
    if r.status_code != 200:
        msg = f"reading Prefect Secret block {name!r} failed with status {r.status_code}"
        raise ConfigError(msg)
    value = (r.json().get("data") or {}).get("value")
    if not isinstance(value, str):
        if value is None:
            msg = f"Prefect Secret block {name!r} holds no value"
            raise ConfigError(msg)
        import json

        return json.dumps(value)
    return value


def install() -> None:
    """Make ``prefect-secret:`` references resolve through the REST API (idempotent)."""
    register_secret_resolver("prefect-secret", read_prefect_secret)


install()
