"""SuperOffice target: system-user auth, archive reads, reference lists and idempotent user writes.

See :mod:`scimflow.connectors.superoffice._target` for the endpoints and the choices made where the
SuperOffice references are silent, :mod:`scimflow.connectors.superoffice._auth` for the login flow, and
:mod:`scimflow.connectors.superoffice._writer` for the apply stage's writer (:class:`SuperOfficeWriter`).
"""

from __future__ import annotations

from scimflow.connectors.superoffice._auth import TICKET_CLAIM, SystemUserAuth, sign_system_user_token
from scimflow.connectors.superoffice._target import SuperOfficeTarget
from scimflow.connectors.superoffice._writer import SuperOfficeWriter

__all__ = ["TICKET_CLAIM", "SuperOfficeTarget", "SuperOfficeWriter", "SystemUserAuth", "sign_system_user_token"]
