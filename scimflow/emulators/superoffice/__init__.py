"""SuperOffice emulator: the login service (system-user flow) and the Web API, stateful and fast at 100k users.

See :mod:`scimflow.emulators.superoffice._app` for the choices made where SuperOffice's docs are silent.
Run it standalone with ``python -m scimflow.emulators.superoffice --users N`` (generated tenant).
"""

from __future__ import annotations

from scimflow.emulators.superoffice._app import TICKET_CLAIM, SuperOfficeEmulator, SuperOfficeEmulatorSettings
from scimflow.emulators.superoffice._state import FixtureError

__all__ = ["TICKET_CLAIM", "FixtureError", "SuperOfficeEmulator", "SuperOfficeEmulatorSettings"]
