"""Delta and page tokens never reach a log: a real delta read against the Graph emulator, captured at DEBUG."""

from __future__ import annotations

import logging
import re

import pytest
from graph_helpers import entra_config, running

from scimflow.connectors.graph import GraphSource
from scimflow.connectors.http import TokenRedactingFilter
from scimflow.emulators.graph import generate_tenant


def _token_values(link: str) -> list[str]:
    return re.findall(r"(?i)\$(?:delta|skip)token=([^&]+)", link)


def test_delta_read_logs_no_token_at_debug(tls, caplog: pytest.LogCaptureFixture) -> None:
    """A full read over several pages, then two delta rounds: no $skiptoken or $deltatoken value in any record."""
    data = generate_tenant(12, 4, seed=5)
    with caplog.at_level(logging.DEBUG), running(tls, data, delta_page_size=3) as run:
        with GraphSource(entra_config(run, page_size=4), ca_bundle=run.ca) as graph:
            first = graph.read_delta(None, None)
            run.admin("PATCH", f"/_emulator/users/{data['users'][0]['id']}", json={"jobTitle": "Chief"})
            second = graph.read_delta(first.frame, first.links)
            graph.read_delta(second.frame, second.links)
    links = [first.links.users, first.links.groups, second.links.users, second.links.groups]
    secrets_seen = {t for link in links for t in _token_values(link)}
    assert secrets_seen, "the delta links carry no token: the test would prove nothing"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert any(r.name == "httpx" and "delta" in r.getMessage() for r in caplog.records), "httpx logged no request"
    assert "token=…" in text
    for token in secrets_seen:
        assert token not in text
    assert not re.search(r"(?i)token=(?!…)[^&\s\"]", text)


def test_filter_redacts_any_token_named_query_value() -> None:
    """The filter rewrites $deltatoken, %24skiptoken and skipToken values, and leaves other text alone."""
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("GET", "https://g/d?$deltatoken=abc&$top=5"), None
    )
    assert TokenRedactingFilter().filter(record)
    assert record.getMessage() == "HTTP Request: GET https://g/d?$deltatoken=…&$top=5"
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "next %s", ("/u?%24skiptoken=Zz9&skipToken=q",), None)
    TokenRedactingFilter().filter(other)
    assert other.getMessage() == "next /u?%24skiptoken=…&skipToken=…"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no tokens here: %d", (3,), None)
    TokenRedactingFilter().filter(plain)
    assert plain.getMessage() == "no tokens here: 3" and plain.args == (3,)
