"""scim2-server's in-memory storage and service with cheaper copies, for the emulator's speed on large groups.

scim2-server copies whole resources with pydantic's ``model_copy(deep=True)`` (``copy.deepcopy`` underneath)
when it reads, writes and answers: four to six copies per PATCH, each walking every member of a group, so a
member PATCH costs time in proportion to the group's size (about 0.7 s on a 5,000-member group). The copies
are needed (callers change what they get), but ``deepcopy``'s generic machinery is not: SCIM resources are
trees of pydantic models, lists and dicts over immutable leaves (strings, numbers, booleans, datetimes,
enums). :func:`tree_copy` copies such a tree with a shallow copy per model (as pydantic's ``__copy__``), several times
faster, and falls back to ``copy.deepcopy`` for any other value.

:class:`FastCopyStorage` is :class:`~scim2_server.memory.InMemoryStorage` with those copies in ``get``,
``search``, ``create`` and ``update`` (each method otherwise the library's: same locking, versions, uniqueness
and indexes; scim2-server's own ``ScimStorageContract`` runs against it in the tests), and
:class:`FastCopyService` is :class:`~scim2_server.service.ScimService` with it in ``publish``. Both also do once
what the library does on every request (find a model's unique attributes and reference paths, route a method and
path) and set fields they build themselves without pydantic's ``validate_assignment`` (:func:`assign`). Nothing
about the protocol changes.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
from collections.abc import Callable
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Union, cast

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from scim2_models import (
    AttributeBinding,
    BulkRequest,
    BulkResponse,
    ListResponse,
    Meta,
    PatchOp,
    Path,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    SearchRequest,
    Uniqueness,
)
from scim2_models.path import AttrPath, attribute_host
from scim2_server.memory import InMemoryStorage, _hashable, _page
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Target, match
from scim2_server.service import ScimService
from scim2_server.storage import SearchPage
from scim2_server.utils import parametrize

__all__ = ["FastCopyService", "FastCopyStorage", "assign", "tree_copy"]

_set = object.__setattr__
_LEAVES = (str, int, float, bool, type(None), bytes, dt.datetime, dt.date, dt.time, dt.timedelta, enum.Enum)
_LEAF_TYPES = frozenset(_LEAVES) - {enum.Enum}  # exact types, checked first (a set look-up, not isinstance)


def tree_copy(value: Any) -> Any:
    """A deep copy of a tree of pydantic models, lists, tuples and dicts whose leaves are immutable.

    Equal to ``copy.deepcopy(value)`` for such trees (no object of the result is shared with ``value`` but
    the immutable leaves); any other object inside is copied with ``copy.deepcopy``. A model is copied as
    pydantic's ``__copy__`` does (a new ``__dict__``, fields set, extra and private values), with each held
    value copied in turn.
    """
    kind = type(value)
    if kind in _LEAF_TYPES or isinstance(value, _LEAVES):
        return value
    if isinstance(value, BaseModel):
        model = type(value)
        copied = model.__new__(model)
        fields = dict(value.__dict__)
        for k, v in fields.items():
            if type(v) not in _LEAF_TYPES:
                fields[k] = tree_copy(v)
        _set(copied, "__dict__", fields)
        extra = value.__pydantic_extra__
        _set(copied, "__pydantic_extra__", None if extra is None else {k: tree_copy(v) for k, v in extra.items()})
        _set(copied, "__pydantic_fields_set__", set(value.__pydantic_fields_set__))
        private = getattr(value, "__pydantic_private__", None)
        if private is not None:
            private = {k: tree_copy(v) for k, v in private.items() if v is not PydanticUndefined}
        _set(copied, "__pydantic_private__", private)
        return copied
    if kind is list:
        return [item if type(item) in _LEAF_TYPES else tree_copy(item) for item in value]
    if kind is dict:
        return {k: item if type(item) in _LEAF_TYPES else tree_copy(item) for k, item in value.items()}
    if kind is tuple:
        return tuple(tree_copy(item) for item in value)
    return copy.deepcopy(value)


def assign(model: BaseModel, **values: Any) -> None:
    """Set fields of ``model`` to values already valid for them, as pydantic's ``model_copy(update=...)`` does.

    Assigning a field of a SCIM resource (``validate_assignment``) re-runs every model validator of the
    resource, each walking all of it: storing a new ``meta`` on a 5,000-member group cost ~4 ms. The values set
    here are built by the storage itself (an id, a ``Meta``, members already validated by the PATCH).
    """
    model.__dict__.update(values)
    model.__pydantic_fields_set__.update(values)


def reader(model: type[Any], path: str) -> Callable[[Any], Any]:
    """A function reading the attribute at ``path`` of a ``model`` resource, as ``Path(path).get(r, strict=False)``.

    scim2-models' ``Path.get`` resolves and walks the path on every read (~50 µs). For a path naming one attribute
    of the resource or of one of its extensions (no sub-attribute, no filter), the walk ends on the object holding
    it (``attribute_host``) and answers its field; the reader does just that. Any other path is read with
    ``Path.get``.
    """
    bound = parametrize(Path, model)(path)
    binding = bound.resolve()
    plain = bound.ast is not None and isinstance(bound.ast, AttrPath) and not bound.ast.sub_attr
    if binding is None or binding.sub_field_name is not None or not plain:
        return lambda resource: bound.get(resource, strict=False)
    name = binding.field_name

    def read(resource: Any) -> Any:
        host = attribute_host(resource, binding)
        return None if host is None else getattr(host, name, None)

    return read


#: scim2-server's routing of a method and path, remembered (a Target is frozen; the ids in paths bound the size).
_match = lru_cache(maxsize=4096)(match)


class FastCopyStorage(InMemoryStorage):
    """:class:`~scim2_server.memory.InMemoryStorage` copying resources with :func:`tree_copy`.

    It also finds the unique attributes of a model, and a :func:`reader` of each attribute it compares, once per
    model (the library walks the schema and each path on every write), and sets ``id`` and ``meta`` with
    :func:`assign` (the library's assignments re-validate the whole resource).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unique_attributes: dict[type[Any], list[AttributeBinding]] = {}
        self._readers: dict[tuple[type[Any], str], Callable[[Any], Any]] = {}

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
            now = self.clock()
            meta = Meta(resource_type=resource_type.name, created=now, last_modified=now, version=self.next_version())
            assign(resource, id=self.generate_id(resource_type, resource), meta=meta)
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
            meta = stored.meta.model_copy(
                update={"location": None, "last_modified": self.clock(), "version": self.next_version()}
            )
            assign(updated, meta=meta)
            values = self._values_of(updated)
            self._check_uniqueness(updated, values)
            self._store(updated, values)
            return tree_copy(updated)  # type: ignore[no-any-return]

    def _values_of(self, resource: Resource[Any]) -> dict[str, Any]:
        """The library's, over the unique attributes of the model found once."""
        model = type(resource)
        attributes = self._unique_attributes.get(model)
        if attributes is None:
            unique_paths = parametrize(Path, model).iter_paths(
                include_subattributes=False, uniqueness=[Uniqueness.server, Uniqueness.global_]
            )
            attributes = self._unique_attributes[model] = [cast(AttributeBinding, p.resolve()) for p in unique_paths]
        values = {}
        for attribute in attributes:
            value = self._comparable_value(resource, attribute)
            if value is not None:
                values[attribute.urn] = _hashable(value)
        return values

    def _comparable_value(self, resource: Resource[Any], attribute: AttributeBinding) -> Any:  # type: ignore[override]
        """The library's, with the reader of the attribute made once per model (:func:`reader`)."""
        key = (type(resource), attribute.urn)
        read = self._readers.get(key)
        if read is None:
            read = self._readers[key] = reader(type(resource), attribute.urn)
        try:
            return attribute.comparable(read(resource))
        except ValueError:
            return None


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
        self._reference_paths: dict[type[Any], list[tuple[Any, Any, Any]]] = {}

    @staticmethod
    def match(request: ScimRequest) -> Target:
        """The library's, remembered per method and path (a request is matched four or five times as it is
        served, each time walking every route)."""
        return _match(request.method.upper(), request.path)

    def _paths_to_publish(self, model: type[Any]) -> list[tuple[Any, Any, Any]]:
        """The library's reference paths of ``model`` that ``_publish_references`` rewrites, with their bindings
        and a :func:`reader` of the attribute holding each, found once per model (the library walks the schema for
        them, and each path, on every answer)."""
        found = self._reference_paths.get(model)
        if found is None:
            found = []
            for path in parametrize(Path, model).iter_paths(target_type=[Reference]):
                binding = path.resolve()
                assert binding is not None
                reference_types = set(cast(Any, binding.target_type).__reference_types__)
                if reference_types and not reference_types & {"external", "uri"}:
                    head = f"{path.schema}:{path.parts[0]}" if path.schema else path.parts[0]
                    found.append((path, binding, reader(model, head)))
            self._reference_paths[model] = found
        return found

    def _publish_references(self, base_url: str, resource: Resource[Any]) -> None:
        """The library's, over the cached paths (:meth:`_paths_to_publish`)."""

        def locate(reference: Any) -> Any:
            if isinstance(reference, list):
                return [locate(item) for item in reference]
            if reference is None:
                return None
            return self.reference_location(base_url, reference)

        for path, binding, head in self._paths_to_publish(type(resource)):
            if binding.sub_field_name is None:
                path.set(resource, locate(path.get(resource)), strict=False)
                continue
            entries = head(resource)
            for entry in entries if isinstance(entries, list) else [entries]:
                if entry is not None:
                    setattr(entry, binding.sub_field_name, locate(getattr(entry, binding.sub_field_name)))

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
