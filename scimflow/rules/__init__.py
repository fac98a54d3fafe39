"""The SCIM rules engine: typed rule sets (YAML → pydantic), compiled to vectorised Polars expressions.

Usage::

    ruleset = load_rules(Path("rules/default.yaml"))      # RuleError(file, line, rule) on any problem
    compiled = compile_rules(ruleset, entra.schema, groups=group_directory(entra))
    frame = compiled.evaluate(entra.lazy(), ref=reference).collect()
"""

from __future__ import annotations

from scimflow.rules._compiler import CompiledRules, compile_rules, group_directory
from scimflow.rules._errors import RuleError
from scimflow.rules._loader import load_rules, parse_rules
from scimflow.rules._models import DEFAULT_MAPPING, ELEMENTS, MAPPED_FIELDS, Rule, RuleSet
from scimflow.rules._testing import TestOutcome, run_rule_tests

__all__ = [
    "DEFAULT_MAPPING",
    "ELEMENTS",
    "MAPPED_FIELDS",
    "CompiledRules",
    "Rule",
    "RuleError",
    "RuleSet",
    "TestOutcome",
    "compile_rules",
    "group_directory",
    "load_rules",
    "parse_rules",
    "run_rule_tests",
]
