"""The JSON Schema of the rule language, generated from the pydantic models (for editors).

``rules/schema.json`` is this module's output, committed; a test keeps it current. Regenerate with::

    uv run python -m scimflow.rules.schema > rules/schema.json

Editors that understand the ``yaml-language-server`` comment pick it up from a rule file's first line:
``# yaml-language-server: $schema=schema.json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from scimflow.rules._models import RuleSet

__all__ = ["rule_schema", "rule_schema_text"]

SCHEMA_ID = "https://scimflow.invalid/schemas/rules-v1.json"


def rule_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``version: 1`` rule set, keys as written in YAML."""
    schema = RuleSet.model_json_schema(by_alias=True, mode="validation")
    # The shorthand forms (a bare value means {value, scope: always}; a bare list, scope add) are
    # accepted by a before-validator, which pydantic cannot see: add them as alternatives.
    shorthand = {
        "confidential": {"type": "boolean"},
        "secondary_groups": {"type": "array", "items": {"type": "string"}},
    }
    for name, prop in schema["$defs"]["Elements"]["properties"].items():
        alt = shorthand.get(name, {"type": "string"})
        prop["anyOf"] = [alt, *prop.get("anyOf", [])]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "scimflow rule set",
    }


def rule_schema_text() -> str:
    """The schema as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(rule_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(rule_schema_text())
