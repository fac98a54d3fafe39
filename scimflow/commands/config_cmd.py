"""``scimflow config schema`` / ``config reference``: the configuration reference, generated from the models.

Every key of ``scimflow.yaml`` is a field of the pydantic models in :mod:`scimflow.config`, each with a
``Field(description=...)``. From them come:

- the JSON Schema (``docs/scimflow.schema.json``, for editors: ``# yaml-language-server: $schema=...``);
- the key tables of ``docs/config.md`` (between the ``<!-- keys:start -->`` / ``<!-- keys:end -->``
  markers; the prose around them is written by hand).

Both are committed and a test keeps them current. Regenerate with::

    uv run python -m scimflow.commands.config_cmd --write
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from scimflow.config import Budget, Config, SecretRef

__all__ = [
    "KeyDoc",
    "config_keys",
    "config_schema",
    "config_schema_text",
    "reference_markdown",
    "render_config_md",
    "run_reference",
    "run_schema",
]

SCHEMA_ID = "https://scimflow.invalid/schemas/config-v1.json"
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "scimflow.schema.json"
CONFIG_MD = ROOT / "docs" / "config.md"
START, END = "<!-- keys:start -->", "<!-- keys:end -->"


@dataclass(frozen=True)
class KeyDoc:
    """One configuration key: its dotted path, type, default, whether it is required, and what it does."""

    key: str
    type: str
    default: str
    required: bool
    description: str
    section: str


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _base(annotation: Any) -> Any:
    if get_origin(annotation) is typing.Annotated:
        return get_args(annotation)[0]
    return annotation


def _type_name(annotation: Any) -> str:
    inner, optional = _strip_optional(annotation)
    inner = _base(inner)
    origin = get_origin(inner)
    if inner is SecretRef:
        name = "secret reference"
    elif inner is Budget:
        name = "count or percentage"
    elif origin is Literal:
        name = " \\| ".join(f"`{a}`" for a in get_args(inner))
    elif origin is list:
        (item,) = get_args(inner) or (str,)
        name = f"list of {_type_name(item)}s"
    elif isinstance(inner, type) and issubclass(inner, BaseModel):
        name = "mapping"
    elif inner is Path:
        name = "path"
    elif isinstance(inner, type):
        name = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            inner.__name__, inner.__name__
        )
    else:
        name = str(inner)
    return name + (" (optional)" if optional and name != "mapping" else "")


def _default_value(info: FieldInfo) -> Any:
    if info.is_required():
        return None
    value = info.get_default(call_default_factory=True)
    if isinstance(value, Budget):
        return str(value) if value.percent else int(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return None  # a block: its keys have their own defaults
    return value


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = _default_value(info)
    if value is None:
        return "—"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _submodel(annotation: Any) -> type[BaseModel] | None:
    inner, _ = _strip_optional(annotation)
    inner = _base(inner)
    if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not Budget:
        return inner
    return None


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[KeyDoc]:
    """Every key of ``scimflow.yaml``, depth first in the models' order (``entra.certificate.thumbprint``)."""
    out: list[KeyDoc] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _submodel(info.annotation)
        out.append(
            KeyDoc(
                key=key,
                type=_type_name(info.annotation),
                default=_default_text(info),
                required=info.is_required(),
                description=(info.description or "").strip(),
                section=prefix.rstrip(".") or "(top level)",
            )
        )
        if sub is not None:
            out.extend(config_keys(sub, f"{key}."))
    return out


def _fill_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Add the defaults pydantic leaves out of the schema (``default_factory`` ones) to ``schema`` in place."""
    props = schema.get("properties", {})
    for name, info in model.model_fields.items():
        if not info.is_required() and "default" not in props.get(name, {}):
            value = _default_value(info)
            if value is not None and name in props:
                props[name]["default"] = value


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``scimflow.yaml``, generated from :class:`scimflow.config.Config`."""
    schema = Config.model_json_schema(mode="validation")
    _fill_defaults(schema, Config)
    defs = schema.get("$defs", {})
    seen: list[type[BaseModel]] = [Config]
    while seen:
        model = seen.pop()
        for info in model.model_fields.values():
            sub = _submodel(info.annotation)
            if sub is not None:
                if sub.__name__ in defs:
                    _fill_defaults(defs[sub.__name__], sub)
                seen.append(sub)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "scimflow configuration (scimflow.yaml)",
    }


def config_schema_text() -> str:
    """The schema as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """The key tables of docs/config.md: one table per section, every key with type, default and meaning."""
    keys = config_keys()
    sections: dict[str, list[KeyDoc]] = {}
    for k in keys:
        sections.setdefault(k.section, []).append(k)
    parts: list[str] = []
    for section, items in sections.items():
        title = "Top level" if section == "(top level)" else f"`{section}`"
        parts.append(f"### {title}\n")
        parts.append("| key | type | default | what it does |")
        parts.append("|---|---|---|---|")
        for k in items:
            parts.append(f"| `{k.key}` | {k.type} | {_cell(k.default)} | {_cell(k.description)} |")
        parts.append("")
    return "\n".join(parts).rstrip("\n") + "\n"


def render_config_md(current: str) -> str:
    """``current`` (docs/config.md) with the text between the markers replaced by :func:`reference_markdown`."""
    if START not in current or END not in current:
        msg = f"docs/config.md: the markers {START} and {END} are missing"
        raise ValueError(msg)
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n\n{reference_markdown()}\n{END}{tail}"


def run_schema(out: Path | None) -> int:
    """``scimflow config schema``: print (or write) the JSON Schema; exit 0."""
    text = config_schema_text()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {out}\n")
    return 0


def run_reference(as_json: bool) -> int:
    """``scimflow config reference``: print every key (Markdown tables, or JSON); exit 0."""
    if as_json:
        sys.stdout.write(json.dumps([k.__dict__ for k in config_keys()], indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(reference_markdown())
    return 0


def _write() -> None:
    SCHEMA_PATH.write_text(config_schema_text(), encoding="utf-8")
    CONFIG_MD.write_text(render_config_md(CONFIG_MD.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write()
        sys.stdout.write(f"wrote {SCHEMA_PATH} and the key tables of {CONFIG_MD}\n")
    else:
        sys.stdout.write(config_schema_text())
