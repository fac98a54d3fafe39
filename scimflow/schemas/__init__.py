"""Pandera models (polars backend) for the canonical frames, and row-level quarantine.

The validate stage sits between extraction and planning (ARCHITECTURE.md, "The pipeline"):

* :func:`validate_entra` splits the Entra frame into rows the planner may use and a quarantine frame
  (``id``, ``key``, ``reason``) that goes to the planner's ``quarantine`` argument, so each of those
  users becomes a ``quarantine`` row of the plan and its partner is not touched.
* :func:`validate_so` splits the SuperOffice frame likewise (``associate_id``, ``key``, ``reason``).
  Decision: a SuperOffice row that fails is left out of the planner's input, so it is never matched,
  updated or retired, and is reported with its reason. Dropping it alone could make its Entra partner
  look partner-less (a ``create`` of a second user with the same login), so
  :func:`entra_blocked_by_so` returns the Entra users whose ``userPrincipalName`` or ``mail`` equals
  (trimmed, case-insensitively) an excluded row's ``user_name`` or ``email``; the pipeline adds them to
  the Entra quarantine. Only damage that makes a row unsafe to act on is checked: a missing or
  duplicated ``associate_id``, an unknown ``user_type``, a missing ``retired`` flag, control characters.
* :func:`validate_plan` checks a plan frame; any failure there is a bug and raises.

Structural problems (a missing column, a wrong dtype) cannot be blamed on a row: they raise
:class:`SchemaViolation`, naming the column and the expected type. Everything else is row-level and lazy:
every failed check of a row is collected into one sentence, e.g.
``"userPrincipalName: missing; displayName: longer than 256 characters"``.

Pandera gotchas handled here (reference/prefect-polars-pandera.md §2): ``nullable=True`` marks columns
whose values may be null (``Optional`` would mean "column may be absent"); every pattern ends with ``$``;
validation always runs on a collected ``DataFrame`` with the data depth forced on, so an environment
setting (``PANDERA_VALIDATION_DEPTH`` / ``PANDERA_VALIDATION_ENABLED``) cannot silently skip checks.
"""

from __future__ import annotations

from scimflow.schemas._models import (
    ACTIONS,
    ENTRA_MAX_LENGTHS,
    SO_USER_TYPES,
    EntraUserModel,
    PlanRowModel,
    SchemaViolation,
    SuperOfficeUserModel,
    ValidationResult,
)
from scimflow.schemas._validate import entra_blocked_by_so, validate_entra, validate_plan, validate_so

__all__ = [
    "ACTIONS",
    "ENTRA_MAX_LENGTHS",
    "SO_USER_TYPES",
    "EntraUserModel",
    "PlanRowModel",
    "SchemaViolation",
    "SuperOfficeUserModel",
    "ValidationResult",
    "entra_blocked_by_so",
    "validate_entra",
    "validate_plan",
    "validate_so",
]
