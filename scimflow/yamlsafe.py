"""YAML that cannot exhaust the process: no anchors or aliases, a size, node and depth cap.

An alias (``*name``) repeats an anchored node (``&name``) by reference; anything that builds plain
values from the document copies it, so a few hundred bytes of nested anchors become gigabytes ("billion
laughs"), and an anchor that refers to itself recurses forever. Rule files and ``scimflow.yaml`` have no
use for either, so :func:`check_yaml` refuses them (naming the line) by scanning the parser's events,
which is linear in the text and builds nothing, before any value is built. :func:`safe_load` is
``yaml.safe_load`` after that check.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = [
    "LOADER",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "UnsafeYamlError",
    "check_yaml",
    "safe_load",
]

#: Bytes in one file (rule files and configs are a few kilobytes).
MAX_YAML_BYTES = 524_288
#: Values (scalars, lists, mappings) in one document.
MAX_YAML_NODES = 100_000
#: Lists and mappings nested in one another.
MAX_YAML_DEPTH = 64
#: The safe loader: libyaml's when PyYAML has it (20x faster, and its scanner caps flow nesting; the
#: pure-Python scanner is quadratic in nested ``[``), else PyYAML's own.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UnsafeYamlError(ValueError):
    """The YAML is refused before it is built; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.problem = message
        self.line = line


def check_yaml(text: str) -> None:
    """Refuse anchors, aliases, and documents too big, too deep or with too many values.

    Raises:
        UnsafeYamlError: naming the line of the first problem.
        yaml.YAMLError: the text is not YAML at all (as ``yaml.safe_load`` would).
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise UnsafeYamlError(f"the file is {size:,} bytes; the limit is {MAX_YAML_BYTES:,}", None)
    nodes = 0
    depth = 0
    for event in yaml.parse(text, Loader=LOADER):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            raise UnsafeYamlError(f"aliases (*{event.anchor}) are not allowed: write the value out", line)
        if not isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            continue
        if event.anchor is not None:
            raise UnsafeYamlError(f"anchors (&{event.anchor}) are not allowed: write the value out", line)
        nodes += 1
        if nodes > MAX_YAML_NODES:
            raise UnsafeYamlError(f"more than {MAX_YAML_NODES:,} values in one file", line)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise UnsafeYamlError(f"lists and mappings are nested more than {MAX_YAML_DEPTH} deep", line)


def safe_load(text: str) -> Any:
    """``yaml.safe_load(text)`` after :func:`check_yaml`: no aliases, bounded size, count and depth.

    Raises:
        UnsafeYamlError: refused by :func:`check_yaml`.
        yaml.YAMLError: not valid YAML.
    """
    check_yaml(text)
    return yaml.load(text, Loader=LOADER)  # noqa: S506 - LOADER is a safe loader
