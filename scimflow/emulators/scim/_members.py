"""Member PATCHes of a large group, served at a cost that follows the PATCH, not the group.

scim2-server applies a PATCH to a copy of the whole resource, validates it whole and stores it whole, so adding
100 members to a 5,000-member group walks 5,000 members several times. :func:`patch_members` serves a PATCH of
a Group whose every operation targets ``members`` (``add`` with a value list; ``remove`` with
``members[value eq "…"]``, or with a value list under the Entra-tolerant policy) with the library's own
machinery on a *window* of the group: the same group with only the members the PATCH names. The request is
read and validated by scim2-server's service (``read_patch``), the operations are applied by scim2-models'
``PatchOp.patch`` under the provider's policy, preconditions (``If-Match``) checked by the service; then the
window's result is merged back into the stored group (members it kept stay in place, new ones are appended,
as the library orders them), with the storage's lock, version and indexes. Any other PATCH, and any PATCH with
``attributes`` or ``excludedAttributes``, is left to scim2-server (the function returns ``None``).
"""

from __future__ import annotations

from typing import Any

from scim2_models import PatchOperation
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import ScimService

from scimflow.emulators.scim._storage import FastCopyStorage, assign, tree_copy

__all__ = ["patch_members"]


def _named_values(op: PatchOperation[Any]) -> set[str] | None:
    """The member ids an operation names, or ``None`` when it is not a plain member operation."""
    path = str(op.path or "").strip()
    kind = str(getattr(op.op, "value", op.op)).lower()
    if path.lower() == "members" and kind in ("add", "remove") and isinstance(op.value, list):
        values = {str(_member_value(v)) for v in op.value}
        return None if "None" in values else values
    prefix = 'members[value eq "'
    if kind == "remove" and op.value is None and path.lower().startswith(prefix) and path.endswith('"]'):
        value = path[len(prefix) : -2]
        return None if '"' in value or "\\" in value else {value}
    return None


def _member_value(v: Any) -> Any:
    return v.get("value") if isinstance(v, dict) else getattr(v, "value", None)


def patch_members(service: ScimService, storage: FastCopyStorage, request: ScimRequest) -> ScimResponse | None:
    """Serve a member-only PATCH of a Group on a window of the group; ``None`` for any other request."""
    if request.method.upper() != "PATCH" or request.query.get("attributes") or request.query.get("excludedAttributes"):
        return None
    with service.provider:
        try:
            target = service.match(request)
        except Exception:  # noqa: BLE001 - the library answers an unmatched path itself
            return None
        if target.operation is not Operation.patch or not target.resource_id:
            return None
        if (target.endpoint or "").strip("/").lower() != "groups":
            return None
        resource_type = service.resource_type_at(str(target.endpoint))
        service.authorize(request, target, resource_type)
        patch_op = service.read_patch(resource_type, request.body or b"", request.header("Content-Type"))
        named: set[str] = set()
        for op in patch_op.operations or []:
            values = _named_values(op)
            if values is None:
                return None
            named |= values
        conditions = service.read_conditions(request)
        with storage.lock:
            stored: Any = storage._stored(resource_type, target.resource_id)
            members = stored.members or []
            hits = [i for i, m in enumerate(members) if m.value in named]  # values are strings (_named_values)
            window: Any = tree_copy(stored.model_copy(update={"members": None}))
            window.members = [tree_copy(members[i]) for i in hits] or None
            if service.apply_patch(window, patch_op, conditions) is not None:
                after = list(window.members or [])
                kept = {m.value for m in after}
                dropped = {i for i in hits if members[i].value not in kept}
                merged = [m for i, m in enumerate(members) if i not in dropped] if dropped else list(members)
                # every value in ``after`` is named, so the named values still present are all it can repeat
                present = {members[i].value for i in hits if i not in dropped}
                merged += [m for m in after if m.value not in present]
                meta = stored.meta.model_copy(
                    update={"location": None, "last_modified": storage.clock(), "version": storage.next_version()}
                )
                # members and meta valid already (the PATCH validated the window): no re-validation of the group
                assign(stored, members=merged or None, meta=meta)
                storage._store(stored, storage._values_of(stored))
            response_parameters = service.read_response_parameters(resource_type, request.query)
            return service.patch_response(request.base_url, stored, response_parameters)
