"""YAML loading that remembers where every value came from (for errors that name the line).

PyYAML's composer gives nodes with marks; we build plain Python values from them ourselves so that
each path (``("rules", 2, "when", "expr")``) maps to its 1-based line. Two YAML 1.1 surprises are
removed on the way: duplicate keys are an error (PyYAML keeps the last silently), and only
``true``/``false`` are booleans (``NO``, ``yes``, ``on`` stay text, as in YAML 1.2). Anchors and
aliases are refused before anything is built (:mod:`scimflow.yamlsafe`: alias bombs, self-reference).
"""

from __future__ import annotations

from typing import Any

import yaml

from scimflow.yamlsafe import LOADER, UnsafeYamlError, check_yaml

__all__ = ["Path_", "YamlError", "load_with_lines"]

Path_ = tuple[str | int, ...]

_BOOLS = {"true": True, "false": False}
_BOOL_TAG = "tag:yaml.org,2002:bool"
_STR_TAG = "tag:yaml.org,2002:str"


class YamlError(ValueError):
    """The text is not YAML we accept; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def load_with_lines(text: str) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document; return the value and a map from each value's path to its line.

    Anchors and aliases are refused, and the size, value count and depth are capped
    (:func:`scimflow.yamlsafe.check_yaml`), before anything is built.
    """
    try:
        check_yaml(text)
        node = yaml.compose(text, Loader=LOADER)
    except UnsafeYamlError as exc:
        raise YamlError(exc.problem, exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(f"not valid YAML: {exc.problem or exc}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML: {exc}", None) from None
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    constructor = yaml.SafeLoader("")
    value = _build(node, (), lines, constructor)
    return value, lines


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int], constructor: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(
                    "keys must be plain names (no merge keys or complex keys)", key_node.start_mark.line + 1
                )
            key = _scalar(key_node, constructor)
            if key in out:
                raise YamlError(f"duplicate key '{key}'", key_node.start_mark.line + 1)
            key_path = (*path, str(key))
            out[key] = _build(value_node, key_path, lines, constructor)
            # a key's own line is more useful than its value's (a block value starts on the next line)
            lines[key_path] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines, constructor) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, constructor)


def _scalar(node: yaml.ScalarNode, constructor: yaml.SafeLoader) -> Any:
    if node.tag == _BOOL_TAG:
        # YAML 1.1 reads NO/yes/on/off as booleans; a country code 'NO' must stay text
        return (
            _BOOLS.get(node.value.lower(), node.value)
            if node.value in {"true", "false", "True", "False", "TRUE", "FALSE"}
            else node.value
        )
    if node.tag == _STR_TAG:
        return node.value
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlError(f"bad value {node.value!r}: {exc}", node.start_mark.line + 1) from None
