"""The SCIM 2.0 target (``target: scim``): SuperOffice's Identity Management Gateway or any SCIM provider.

- :class:`ScimClient`: Users and Groups over the project's HTTP seam, in the ``entra`` or ``rfc`` dialect.
- :func:`read_scim_state`: the SCIM users (with their computed-group element values) and the computed
  groups as frames for planning (:data:`SCIM_USERS_SCHEMA`, :data:`SCIM_GROUPS_SCHEMA`).
- :func:`probe`: a read-only look for ``doctor`` (token, listing, ETags, a dialect hint).
- :class:`ScimWriter`: the apply engine's writer (:class:`scimflow.apply.Writer`).
- Computed groups' names: :mod:`scimflow.computed_groups`; value comparison: :mod:`scimflow.vocab`.
"""

from __future__ import annotations

from scimflow.config import ScimConfig
from scimflow.connectors.scim._client import Created, ListingRefusedError, ScimClient
from scimflow.connectors.scim._mapping import USER_FIELDS, user_values
from scimflow.connectors.scim._probe import ScimProbe, probe
from scimflow.connectors.scim._state import SCIM_GROUPS_SCHEMA, SCIM_USERS_SCHEMA, read_scim_state
from scimflow.connectors.scim._writer import ScimWriter

__all__ = [
    "SCIM_GROUPS_SCHEMA",
    "SCIM_USERS_SCHEMA",
    "USER_FIELDS",
    "Created",
    "ListingRefusedError",
    "ScimClient",
    "ScimConfig",
    "ScimProbe",
    "ScimWriter",
    "probe",
    "read_scim_state",
    "user_values",
]
