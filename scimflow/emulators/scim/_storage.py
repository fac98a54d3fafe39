"""scim2-server's in-memory storage and service with cheaper copies, for the emulator's speed on large groups.

scim2-server copies whole resources with pydantic's ``model_copy(deep=True)`` (``copy.deepcopy`` underneath)
when it reads, writes and answers: four to six copies per PATCH, each walking every member of a group, so a
member PATCH costs time in proportion to the group's size (about 0.7 s on a 5,000-member group). The copies
are needed (callers change what they get), but ``deepcopy``'s generic machinery is not: SCIM resources are
trees of pydantic models, lists and dicts over immutable leaves (strings, numbers, booleans, datetimes,
enums). :func:`tree_copy` copies such a tree with pydantic's shallow ``model_copy()`` per model, several times
faster, and falls back to ``copy.deepcopy`` for any other value.

:class:`FastCopyStorage` is :class:`~scim2_server.memory.InMemoryStorage` with those copies in ``get``,
``search``, ``create`` and ``update`` (each method otherwise the library's: same locking, versions, uniqueness
and indexes; scim2-server's own ``ScimStorageContract`` runs against it in the tests), and
:class:`FastCopyService` is :class:`~scim2_server.service.ScimService` with it in ``publish``. Nothing about
the protocol changes.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
from http import HTTPStatus
from typing import Any, Union

from pydantic import BaseModel
from scim2_models import (
    BulkRequest,
    BulkResponse,
    ListResponse,
    Meta,
    PatchOp,
    Path,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    SearchRequest,
)
from scim2_server.memory import InMemoryStorage, _page
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.storage import SearchPage
from scim2_server.utils import parametrize

__all__ = ["FastCopyService", "FastCopyStorage", "tree_copy"]

_LEAVES = (str, int, float, bool, type(None), bytes, dt.datetime, dt.date, dt.time, dt.timedelta, enum.Enum)


def tree_copy(value: Any) -> Any:
    """A deep copy of a tree of pydantic models, lists, tuples and dicts whose leaves are immutable.

    Equal to ``copy.deepcopy(value)`` for such trees (no object of the result is shared with ``value`` but
    the immutable leaves); any other object inside is copied with ``copy.deepcopy``.
    """
    if isinstance(value, _LEAVES):
        return value
    if isinstance(value, BaseModel):
        copied = value.model_copy()  # a new __dict__, fields set, extra and private values
        fields = copied.__dict__
        for name, item in fields.items():
            if not isinstance(item, _LEAVES):
                fields[name] = tree_copy(item)
        for held in (copied.__pydantic_extra__, copied.__pydantic_private__):
            if held:
                for name, item in held.items():
                    held[name] = tree_copy(item)
        return copied
    if isinstance(value, list):
        return [item if isinstance(item, _LEAVES) else tree_copy(item) for item in value]
    if isinstance(value, dict):
        return {k: item if isinstance(item, _LEAVES) else tree_copy(item) for k, item in value.items()}
    if isinstance(value, tuple):
        return tuple(tree_copy(item) for item in value)
    return copy.deepcopy(value)


class FastCopyStorage(InMemoryStorage):
    """:class:`~scim2_server.memory.InMemoryStorage` copying resources with :func:`tree_copy`."""

    def get(self, resource_type: ResourceType, resource_id: str, **kwargs: Any) -> Resource[Any]:
        with self.lock:
            return tree_copy(self._stored(resource_type, resource_id))  # type: ignore[no-any-return]

    def search(
        self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *, position: Any = None
    ) -> SearchPage:
        with self.lock:
            names = list(dict.fromkeys(rt.name for rt in resource_types))
            scim_filter = search_request.filter
            candidates = self._candidates(names, scim_filter)
            if scim_filter is not None and not scim_filter.models and candidates:
                models = tuple(dict.fromkeys(type(r) for r in candidates))
                scim_filter = parametrize(ScimFilter, Union[models])(str(scim_filter))  # noqa: UP007
            found = [r for r in candidates if scim_filter is None or scim_filter.match(r)]
            page = _page(search_request, position, found)
            page.resources = [tree_copy(r) for r in page.resources]
            return page

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        with self.lock:
            resource = tree_copy(resource)
            resource.id = self.generate_id(resource_type, resource)
            now = self.clock()
            resource.meta = Meta(
                resource_type=resource_type.name, created=now, last_modified=now, version=self.next_version()
            )
            values = self._values_of(resource)
            self._check_uniqueness(resource, values)
            self._store(resource, values)
            return tree_copy(resource)  # type: ignore[no-any-return]

    def update(
        self, resource_type: ResourceType, resource: Resource[Any], *, expected_version: str | None = None
    ) -> Resource[Any]:
        with self.lock:
            stored = self._stored(resource_type, resource.id)
            self._check_version(stored, expected_version)
            updated = tree_copy(resource)  # the library re-validates a dump here; the resource is a valid model
            assert stored.meta is not None
            updated.meta = stored.meta.model_copy(
                update={"location": None, "last_modified": self.clock(), "version": self.next_version()}
            )
            values = self._values_of(updated)
            self._check_uniqueness(updated, values)
            self._store(updated, values)
            return tree_copy(updated)  # type: ignore[no-any-return]


class FastCopyService(ScimService):
    """:class:`~scim2_server.service.ScimService` whose ``publish`` copies with :func:`tree_copy`.

    It also holds the generic classes scim2-server parametrizes on every request (``PatchOp[Group]``,
    ``ResponseParameters[User]``, ``ListResponse[User | Group]``, ...): pydantic caches them in a
    ``WeakValueDictionary``, so without a holder each is collected between requests and built again (a few
    milliseconds of class creation per request).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinned_generics = self._pin_generics()

    def _pin_generics(self) -> list[Any]:
        models = self.get_models()
        each: list[Any] = []
        for model in models:
            each += [parametrize(g, model) for g in (Path, ResponseParameters, PatchOp, SearchRequest, ScimFilter)]
        every: Any = Union[tuple(models)]  # noqa: UP007
        each += [parametrize(g, every) for g in (ListResponse, SearchRequest, ScimFilter, BulkRequest, BulkResponse)]
        return each

    def publish(self, base_url: str, resource: Resource[Any]) -> Resource[Any]:
        assert resource.meta is not None
        assert resource.id is not None
        update: dict[str, Any] = {
            "location": self.resource_location(base_url, self.get_resource_type_of(resource), resource.id)
        }
        if not self.etag_supported:
            update["version"] = None
        published: Resource[Any] = tree_copy(resource)
        published.meta = resource.meta.model_copy(update=update)
        self._publish_references(base_url, published)
        return published

    def patch_response(
        self, base_url: str, resource: Resource[Any], response_parameters: ResponseParameters[Any]
    ) -> ScimResponse:
        """The library's: 204 with the ETag when no attributes are asked for (without copying the resource to
        publish it first), else the published resource."""
        if response_parameters.attributes or response_parameters.excluded_attributes:
            return super().patch_response(base_url, resource, response_parameters)
        assert resource.meta is not None
        version = resource.meta.version if self.etag_supported else None
        return ScimResponse(HTTPStatus.NO_CONTENT, None, {"ETag": version} if version else {})
