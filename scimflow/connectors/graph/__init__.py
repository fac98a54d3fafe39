"""Microsoft Graph source for Entra ID users: msal app-only auth, users + transitive memberships, delta.

See :mod:`._source` for the read strategy, :mod:`._delta` for how delta rounds are applied, and
:mod:`._auth` for the process-wide msal app and the 401 handling.
"""

from __future__ import annotations

from scimflow.connectors.graph._auth import clear_app_cache
from scimflow.connectors.graph._delta import DeltaLinks, DeltaResult
from scimflow.connectors.graph._source import GraphSource

__all__ = ["DeltaLinks", "DeltaResult", "GraphSource", "clear_app_cache"]
