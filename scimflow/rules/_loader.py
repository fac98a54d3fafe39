"""Load rule files: YAML with line tracking → :class:`RuleSet`, errors as :class:`RuleError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scimflow.rules._errors import RuleError
from scimflow.rules._models import RuleSet
from scimflow.rules._sql import ExprError, check_text
from scimflow.rules._yaml import YamlError, load_with_lines
from scimflow.yamlsafe import MAX_YAML_BYTES

__all__ = ["MAX_FILE_TOKENS", "load_rules", "parse_rules"]

#: Expression tokens in one rule file, all expressions together (each is also capped on its own).
MAX_FILE_TOKENS = 10_000


def load_rules(path: Path | str) -> RuleSet:
    """Read and validate a rule file.

    Raises:
        RuleError: unreadable, not YAML, or not a valid rule set; the message names the file, the line
            and (where the problem is inside one) the rule.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise RuleError(f"cannot read the rule file: {exc.strerror}", file=str(p)) from None
    if len(raw) > MAX_YAML_BYTES:
        raise RuleError(f"the rule file is larger than {MAX_YAML_BYTES:,} bytes", file=str(p))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(f"the rule file is not UTF-8 text (byte {exc.start})", file=str(p)) from None
    return parse_rules(text, source=str(p))


def parse_rules(text: str, *, source: str = "<rules>") -> RuleSet:
    """Validate rule-set YAML given as text; ``source`` names it in errors."""
    try:
        data, lines = load_with_lines(text)
    except YamlError as exc:
        raise RuleError(str(exc), file=source, line=exc.line) from None
    if not isinstance(data, dict):
        raise RuleError("the top level must be a mapping (version, match, mapping, rules, ...)", file=source, line=1)
    try:
        ruleset = RuleSet.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc, data, lines, source) from None
    ruleset._source = source  # set once, at construction
    ruleset._lines = lines
    for path, rule, problem in ruleset.problems():
        raise RuleError(problem, file=source, line=ruleset.line_of(path), rule=rule)
    _check_expressions(ruleset, source)
    return ruleset


def _check_expressions(ruleset: RuleSet, source: str) -> None:
    """Refuse an unsafe or oversized expression now, so that no caller ever hands one to Polars."""
    exprs: list[tuple[tuple[str | int, ...], str | None, str, str]] = [
        (("mapping", name), None, f"mapping {name}", text) for name, text in ruleset.mapping.items()
    ]
    exprs += [
        (("rules", i, "when", "expr"), rule.name, "when.expr", rule.when.expr)
        for i, rule in enumerate(ruleset.rules)
        if rule.when.expr is not None
    ]
    total = 0
    for path, rule, what, text in exprs:
        try:
            total += check_text(text)
        except ExprError as exc:
            raise RuleError(f"{what}: {exc}", file=source, line=ruleset.line_of(path), rule=rule) from None
        if total > MAX_FILE_TOKENS:
            raise RuleError(
                f"{what}: the expressions of this file have more than {MAX_FILE_TOKENS:,} parts together",
                file=source,
                line=ruleset.line_of(path),
                rule=rule,
            )


def _rule_name(data: dict[str, Any], loc: tuple[str | int, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules")
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
            return str(name) if name is not None else f"#{loc[1] + 1}"
    return None


def _translate(
    exc: ValidationError, data: dict[str, Any], lines: dict[tuple[str | int, ...], int], source: str
) -> RuleError:
    """Turn the first pydantic error into a :class:`RuleError` at the right line (all listed in the text)."""
    errors = exc.errors(include_url=False, include_input=False)
    texts = []
    for err in errors:
        # pydantic adds union-branch names (e.g. 'str', 'list[...]', 'function-before[...]') to locations
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or ("[" not in p and p not in {"str", "list", "bool"}))
        line = None
        for n in range(len(loc), -1, -1):
            line = lines.get(loc[:n])
            if line is not None:
                break
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        rule = _rule_name(data, loc)
        texts.append((loc in lines, line, rule, f"{where}: {msg}"))
    # errors at a value that is in the file (a wrong key, a bad value) before missing ones
    texts.sort(key=lambda t: not t[0])
    _, line, rule, msg = texts[0]
    if len(texts) > 1:
        msg += "".join(f"\n  also line {ln}: {m}" + (f" (rule '{r}')" if r else "") for _, ln, r, m in texts[1:])
    return RuleError(msg, file=source, line=line, rule=rule)
