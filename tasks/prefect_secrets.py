"""Read ``prefect-secret:NAME`` references with Prefect's own client (``Secret.load``).

This is the Prefect side of the ``prefect-secret`` scheme: the core (which never imports Prefect) finds it
through the ``scimflow.secret_schemes`` entry point (pyproject.toml) only when a config holds a
``prefect-secret:`` reference or ``scimflow setup prefect-secret`` runs, and ``prefect.blocks.system`` is
imported only inside the functions. Prefect's client then brings what a hand-written call could not: the active profile,
``PREFECT_API_URL``, ``PREFECT_API_KEY`` (Prefect Cloud), ``PREFECT_API_AUTH_STRING`` (a self-hosted
server behind basic auth), its CA settings, and its retries on 429 and 5xx.
"""

from __future__ import annotations

import json
from typing import Any

from scimflow.errors import ConfigError  # not scimflow.config: the config loads this module on use

__all__ = ["read_prefect_secret", "save_prefect_secret"]


def read_prefect_secret(name: str) -> str:
    """Return the value of the Prefect Secret block ``name`` (JSON text when it holds a non-string).

    Raises:
        ConfigError: Prefect is not installed, its API cannot be reached, or there is no such block. The
            message names the block and never its value.
    """
    try:
        from prefect.blocks.system import Secret
    except ImportError:
        msg = "Prefect is not installed here, so Prefect Secret blocks cannot be read"
        raise ConfigError(msg) from None
    try:
        block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        if "Unable to find block document" in str(exc) or "not found" in str(exc).lower():
            msg = f"no Prefect Secret block named {name!r}"
            raise ConfigError(msg) from None
        msg = f"Prefect Secret block {name!r} cannot be read: {type(exc).__name__}"
        raise ConfigError(msg) from None
    except Exception as exc:  # noqa: BLE001 - transport and API errors: name the block, never a value
        msg = f"cannot read Prefect Secret block {name!r} through the Prefect API: {type(exc).__name__}"
        raise ConfigError(msg) from None
    value = block.get()
    if value is None:
        msg = f"Prefect Secret block {name!r} holds no value"
        raise ConfigError(msg)
    return value if isinstance(value, str) else json.dumps(value)


def save_prefect_secret(name: str, value: str) -> None:
    """Save ``value`` as the Prefect Secret block ``name`` (replacing one of that name).

    Raises:
        ConfigError: Prefect is not installed, or its API refused or could not be reached (the message
            names the block, never the value).
    """
    try:
        from prefect.blocks.system import Secret
    except ImportError:
        msg = "Prefect is not installed here, so Prefect Secret blocks cannot be saved"
        raise ConfigError(msg) from None
    try:
        Secret(value=value).save(name, overwrite=True, _sync=True)  # type: ignore[call-arg]
    except Exception as exc:  # noqa: BLE001 - name the block and the error type, never the value
        msg = f"cannot save Prefect Secret block {name!r} through the Prefect API: {type(exc).__name__}"
        raise ConfigError(msg) from None
