"""Fixtures of the browser tests: the session Prefect server with its UI, Chromium.

The environment is set here, at import, before any test imports prefect (see tests/prefect_server.py).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

__all__ = ["UiServer"]


@dataclass(frozen=True)
class UiServer:
    """A Prefect server with its UI: ``ui_url`` for the browser, ``api_url`` for REST checks."""

    ui_url: str
    api_url: str


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # loopback http
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture(scope="package")
def ui_server(prefect_server: Any) -> UiServer:
    """The session Prefect server (tests/conftest.py), which runs with its UI on."""
    base = prefect_server.ui_url
    if _get(f"{base}/ui-settings") != 200:
        pytest.fail(f"the Prefect server on {base} runs without its UI (start it with ui=True)")
    return UiServer(base, prefect_server.api_url)


@pytest.fixture
def chromium_page(tmp_path: Path) -> Iterator[Any]:
    """A page of headless Debian Chromium (fresh profile, 1280x800) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            context.set_default_timeout(20_000)
            yield context.new_page()
        finally:
            context.close()
