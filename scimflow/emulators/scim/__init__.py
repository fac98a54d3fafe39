"""SCIM emulator: a SCIM 2.0 service provider (python-scim2's scim2-server) with the emulators' knobs.

See :mod:`scimflow.emulators.scim._app` for the URLs and knobs, :mod:`scimflow.emulators.scim._server` for
the two policies (``rfc`` strict, ``entra`` Entra-tolerant), :mod:`scimflow.emulators.scim._storage` for
scim2-server's storage and service with cheaper copies (the emulator's speed on large groups).
"""

from __future__ import annotations

from scimflow.emulators.scim._app import SCIM_PATH, ScimEmulator, ScimEmulatorSettings
from scimflow.emulators.scim._server import DIALECTS, Dialect, ScimFixtureError, scim_provider
from scimflow.emulators.scim._storage import FastCopyService, FastCopyStorage, tree_copy

__all__ = [
    "DIALECTS",
    "SCIM_PATH",
    "Dialect",
    "FastCopyService",
    "FastCopyStorage",
    "ScimEmulator",
    "ScimEmulatorSettings",
    "ScimFixtureError",
    "scim_provider",
    "tree_copy",
]
