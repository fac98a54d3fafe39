"""SuperOffice target: system-user auth, archive reads, reference lists and idempotent user writes.

See :mod:`scimflow.connectors.superoffice._target` for the endpoints and the choices made where the
SuperOffice references are silent, and :mod:`scimflow.connectors.superoffice._auth` for the login flow.
"""

from __future__ import annotations

from scimflow.connectors.superoffice._auth import TICKET_CLAIM, SystemUserAuth, sign_system_user_token
from scimflow.connectors.superoffice._target import SuperOfficeTarget

__all__ = ["TICKET_CLAIM", "SuperOfficeTarget", "SystemUserAuth", "sign_system_user_token"]
