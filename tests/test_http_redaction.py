"""What the HTTP libraries log: tokens and filters naming users are redacted (scimflow.connectors.http)."""

from __future__ import annotations

import logging

import pytest

from scimflow.connectors.http import TokenRedactingFilter


@pytest.mark.parametrize(
    ("url", "kept", "gone"),
    [
        ("https://g/v1.0/users/delta?$deltatoken=SECRETVALUE", "$deltatoken=…", "SECRETVALUE"),
        ("https://s/scim/v2/Users?filter=userName%20eq%20%22kari%40contoso.com%22", "filter=…", "kari"),
        ("https://s/scim/v2/Users?startIndex=1&filter=externalId%20eq%20%22abc%22&count=5", "&count=5", "abc"),
        ("https://so/api/v1/archive/User?$filter=userName%20oneOf('ola@x')&$top=1000", "$top=1000", "ola@x"),
        ("https://so/api/v1/archive/User?%24filter=userName", "%24filter=…", "userName"),
    ],
    ids=["delta-token", "scim-username", "scim-externalid", "odata-filter", "encoded-dollar"],
)
def test_urls_in_library_logs_are_redacted(url: str, kept: str, gone: str) -> None:
    """httpx's request line keeps the URL's shape but not the values that carry tokens or personal data."""
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: GET %s "%s"', (url, "200 OK"), None)
    assert TokenRedactingFilter().filter(record)
    text = record.getMessage()
    assert kept in text and gone not in text
