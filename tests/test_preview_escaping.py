"""Directory data in the preview, the changes table, the approval form and the report renders as plain text.

An Entra attribute such as a displayName ``[Approve now](https://evil.example)`` must not become a link
in the approver's view, nor an image, HTML, a heading, a list or an extra table column. Each artifact is
parsed by a CommonMark parser with GFM tables (markdown-it-py) and the parse is inspected.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from scimflow.apply import ApplyReport, PlanRow, RowResult
from scimflow.preview import (
    approval_description,
    changes_table,
    md_code,
    md_text,
    preview_markdown,
    report_markdown,
)

HOSTILE = [
    "[Approve now](https://evil.example)",
    "![logo](https://evil.example/x.png)",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "a | b | c",
    "``code`` and `more`",
    "first line\n# Heading\n| x | y |\n",
    "<https://evil.example>",
    "https://evil.example/approve",
    "www.evil.example",
    "mallory@evil.example",
    "*bold* __strong__ ~~gone~~",
    "&lt;b&gt; &amp; &#x41;",
    "back\\slash\\[x](y)",
    "[ref]: https://evil.example",
    "- item\r\n1. item\r\n> quote",
    "\u202eevil\u2028line\u2029para",
]


def _md() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _plain(value: str) -> str:
    """What the reader must see: the value, line breaks and hidden direction marks as spaces."""
    return "".join(" " if c in "\r\n\u2028\u2029\u202e" else c for c in value)


def _text(inline: Token) -> str:
    kids = inline.children or []
    bad = [k.type for k in kids if k.type not in ("text", "text_special")]
    assert not bad, f"markup from data: {bad} in {inline.content!r}"
    return "".join(k.content for k in kids).strip()


def _walk(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    for t in tokens:
        out.append(t)
        out.extend(_walk(t.children or []))
    return out


def _rows_of_tables(tokens: list[Token]) -> list[list[list[str]]]:
    """Each table as rows of cell texts."""
    tables: list[list[list[str]]] = []
    row: list[str] | None = None
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            tables.append([])
        elif t.type == "tr_open":
            row = []
        elif t.type in ("th_open", "td_open"):
            assert row is not None
            row.append(_text(tokens[i + 1]))
        elif t.type == "tr_close":
            assert row is not None
            tables[-1].append(row)
    return tables


def _shape(md: str) -> list[str]:
    """The document's structure: every token type but text (what data may add to)."""
    return [t.type for t in _walk(_md().parse(md)) if t.type not in ("text", "text_special")]


def _no_markup_from_data(md: str, benign: str) -> list[Token]:
    """``md`` (hostile values) has exactly the structure of ``benign`` (the same artifact with plain values)."""
    assert _shape(md) == _shape(benign)
    for needle in ("://", "www.", "]("):
        assert needle not in md, needle  # nothing a GFM autolinker could pick up
    assert re.search(r"(?<!\\)[<>&@]", md) is None  # nor HTML or an e-mail autolink: <, >, & and @ escaped
    return _md().parse(md)


def _rows(values: list[str] = HOSTILE) -> list[PlanRow]:
    return [
        PlanRow(
            action="update",
            key=value,
            associate_id=i + 1,
            changes={"display_name": {"from": "Plain Name", "to": value}},
            rules=[value],
        )
        for i, value in enumerate(values)
    ] + [PlanRow(action="quarantine", key="q@x.com", reason=values[0])]


BENIGN = [f"value{i}" for i in range(len(HOSTILE))]


def test_preview_renders_hostile_values_as_text() -> None:
    """Hostile keys, values and rule names are text in their cells: no link, image, HTML, heading or extra column."""
    summary: dict[str, Any] = {"plan_hash": "ab" * 32, "update": len(HOSTILE), "guardrails": {"verdict": "ok"}}
    md = preview_markdown(summary, _rows(), plan_dir="/plans/run-1", top=len(HOSTILE) + 1)
    benign = preview_markdown(summary, _rows(BENIGN), plan_dir="/plans/run-1", top=len(HOSTILE) + 1)
    tokens = _no_markup_from_data(md, benign)
    affected, counts, hits, risky = _rows_of_tables(tokens)
    assert len(affected) == 1 + 10 and all(len(r) == 3 for r in affected)  # the largest updates (preview_risk)
    assert {r[0] for r in affected[1:]} <= {_plain(v).strip() for v in HOSTILE}
    assert len(hits) == 1 + len(HOSTILE) and all(len(r) == 2 for r in hits)
    assert sorted(r[0] for r in hits[1:]) == sorted(_plain(v).strip() for v in HOSTILE)
    assert len(risky) == 2 + len(HOSTILE) and all(len(r) == 3 for r in risky)
    by_key = {r[1]: r[2] for r in risky[1:]}
    for value in HOSTILE:
        assert by_key[_plain(value).strip()] == f"display_name: Plain Name → {_plain(value)}".strip()
    assert by_key["q@x.com"] == HOSTILE[0]
    assert len(counts) == 10


def test_changes_table_cells_are_literal_markdown() -> None:
    """The table artifact's string cells (rendered as Markdown by the Prefect UI) read as the values."""
    for row in changes_table(_rows()):
        for column in ("key", "changes", "rules", "reason", "action"):
            cell = str(row[column])
            tokens = _md().parse(cell)
            inline = [t for t in tokens if t.type == "inline"]
            rendered = _text(inline[0]) if inline else ""
            assert [t.type for t in tokens][:1] in ([], ["paragraph_open"]), cell
            assert "|" not in cell.replace("\\|", "")
            if column == "key":
                assert rendered in {_plain(v).strip() for v in HOSTILE} | {"q@x.com"}


def test_report_escapes_approver_comment_holds_and_details() -> None:
    """The report's approver, comment, held users and error details are text, whatever they contain."""

    def report(values: list[str]) -> str:
        rows = [RowResult(key=v, action="update", outcome="failed", detail=f"SuperOffice said: {v}") for v in values]
        applied = ApplyReport(plan_hash="cd" * 32, planned=len(values), failed=len(values), rows=rows)
        return report_markdown(
            applied,
            status="partial",
            plan_hash="cd" * 32,
            approver=values[0],
            comment=values[2],
            held_by={"hold_users": values[:3]},
            plan_dir="/plans/run-1",
        )

    md = report(HOSTILE)
    tokens = _no_markup_from_data(md, report(BENIGN))
    outcomes, problems = _rows_of_tables(tokens)
    assert [r[0] for r in outcomes[1:]][:2] == ["planned", "applied"]
    assert len(problems) == 1 + len(HOSTILE) and all(len(r) == 4 for r in problems)
    assert [r[3] for r in problems[1:]] == [f"SuperOffice said: {_plain(v)}".strip() for v in HOSTILE]
    paragraph = next(t for t in tokens if t.type == "inline" and "Approved by" in t.content)
    assert HOSTILE[0] in "".join(k.content for k in paragraph.children or [])
    assert _plain(HOSTILE[2]) in "".join(k.content for k in paragraph.children or [])


def test_approval_description_codes_paths_and_escapes_reasons() -> None:
    """The approval form's description keeps a hostile plan folder in one code span and reasons as text."""
    summary: dict[str, Any] = {
        "plan_hash": "ef" * 32,
        "guardrails": {"verdict": "held", "held": ["retire"], "reasons": [HOSTILE[0], HOSTILE[6]]},
    }
    folder = "/plans/`x` [a](https://evil.example)"
    md = approval_description(summary, plan_dir=folder, preview_key="k")
    plain = {**summary, "guardrails": {**summary["guardrails"], "reasons": ["r1", "r2"]}}
    assert _shape(md) == _shape(approval_description(plain, plan_dir="/plans/x", preview_key="k"))
    tokens = _md().parse(md)
    codes = [t.content for t in _walk(tokens) if t.type == "code_inline"]
    assert folder in codes and "ef" * 32 in codes
    items = [_text(t) for t in tokens if t.type == "inline" and t.level == 3]
    assert items == [_plain(HOSTILE[0]).strip(), _plain(HOSTILE[6]).strip()]


@pytest.mark.parametrize("value", ["plain", "a`b", "``x``", "`lead", "trail`", "x | y"])
def test_md_code_is_one_verbatim_code_span(value: str) -> None:
    """md_code gives exactly one code span whose content is the value, whatever backticks it holds."""
    tokens = _md().parse(md_code(value))
    spans = [t for t in _walk(tokens) if t.type == "code_inline"]
    assert [t.content for t in spans] == [value]


def test_md_text_leaves_ordinary_text_readable() -> None:
    """Letters, digits, spaces and non-ASCII text pass through unchanged; only punctuation is escaped."""
    assert md_text("Ola Nordmann Ærø 42") == "Ola Nordmann Ærø 42"
    assert md_text("a.b") == "a\\.b"
