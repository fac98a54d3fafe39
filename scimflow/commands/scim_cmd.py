"""``scimflow scim img-rules``: the Identity Manager rules an admin enters once for a SCIM target."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from scimflow.computed_groups import img_rules
from scimflow.rules import RuleError, load_rules

__all__ = ["print_img_rules"]

DEFAULT_PREFIX = "scimflow"


def _prefix_from_config(config: Path | None) -> str:
    if config is None:
        return DEFAULT_PREFIX
    from scimflow.config import load_config

    cfg = load_config(config)
    scim = getattr(cfg, "scim", None)
    return str(getattr(scim, "group_prefix", DEFAULT_PREFIX) or DEFAULT_PREFIX)


def print_img_rules(
    rules: Path,
    *,
    prefix: str | None = None,
    config: Path | None = None,
    as_json: bool = False,
    console: Console | None = None,
) -> int:
    """Print one IMG rule per computed group of ``rules`` (a table, or JSON); 0 on success, 1 on a bad rule set.

    The group prefix is ``prefix``, else the config's ``scim.group_prefix``, else ``scimflow``.
    """
    console = console or Console()
    if not console.is_terminal:  # piped: the whole table, however wide
        console = Console(width=max(console.width, 240))
    err = Console(stderr=True, soft_wrap=True)  # an error names a file: never wrapped mid-path
    try:
        ruleset = load_rules(rules)
        chosen = prefix or _prefix_from_config(config)
    except RuleError as exc:
        err.print(Text(f"error: {exc}"))
        return 1
    listed = img_rules(ruleset, chosen)
    if as_json:
        console.print_json(json.dumps([r.as_json() for r in listed], ensure_ascii=False))
        return 0
    table = Table(title=f"Identity Manager rules for {rules} (group prefix {chosen!r})", title_justify="left")
    table.add_column("#", justify="right")
    # group names are copied into Identity Manager: never cut or wrapped
    width = max((len(r.group) for r in listed), default=10)
    table.add_column("Scope: in group", no_wrap=True, min_width=width)
    table.add_column("Set")
    table.add_column("Value")
    table.add_column("From scimflow rules", style="dim")
    for n, rule in enumerate(listed, start=1):
        value = ("true" if rule.value else "false") if isinstance(rule.value, bool) else str(rule.value)
        table.add_row(str(n), Text(rule.group), rule.label, Text(value), Text(", ".join(rule.rules)))
    console.print(table)
    console.print(
        Text(
            f"{len(listed)} rules. Enter each once in Identity Manager (SCIM rules → Add rule: scope 'In group', "
            "the group, then the element and value), in any order: each group sets one element. Check every "
            "value against SuperOffice's lists: the gateway resolves them, scimflow does not."
        )
    )
    return 0
