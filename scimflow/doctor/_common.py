"""What every doctor check shares: the :class:`Check` result, the fail-fast retry policy, the verifying client."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scimflow.connectors.http import RetryPolicy, build_client, ssl_context

__all__ = [
    "CERT_WARN_DAYS",
    "CLOCK_FAIL_SECONDS",
    "CLOCK_WARN_SECONDS",
    "POLICY",
    "TIMEOUT",
    "Check",
    "expiry_check",
    "skip",
    "verifying_client",
]


#: A server or credential certificate expiring within this many days is a warning.
CERT_WARN_DAYS = 30
#: A clock further off than this (seconds) from a server's ``Date`` fails: tokens and signed system-user
#: tokens are only accepted within 5 minutes.
CLOCK_FAIL_SECONDS = 300.0
#: Beyond this, the clock check warns.
CLOCK_WARN_SECONDS = 60.0
#: Doctor fails fast: two attempts, bounded, instead of the sync's patient retry budget.
POLICY = RetryPolicy(attempts=2, timeout=20.0, wait_initial=0.2, wait_max=1.0, max_retry_after=2.0)
TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    """One check's outcome. ``warn`` passes but needs attention; ``skipped`` did not run (a prerequisite failed)."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warn: bool = False
    skipped: bool = False

    @property
    def status(self) -> str:
        """``ok``, ``warn``, ``fail`` or ``skip``."""
        if self.skipped:
            return "skip"
        if not self.ok:
            return "fail"
        return "warn" if self.warn else "ok"


def verifying_client(ca_bundle: Path | None, **kwargs: Any) -> httpx.Client:
    """A client built like the connectors' (:func:`build_client`), sharing one verifying SSL context."""
    transport = httpx.HTTPTransport(verify=ssl_context(ca_bundle), retries=0)
    return build_client(timeout=TIMEOUT, transport=transport, **kwargs)


def skip(name: str, why: str) -> Check:
    """A check that did not run because ``why`` (a prerequisite failed)."""
    return Check(name, ok=False, detail=f"skipped: {why}", skipped=True)


def expiry_check(name: str, not_after: dt.datetime, today: dt.datetime | None, *, renew: str) -> Check:
    """Expired fails, within :data:`CERT_WARN_DAYS` warns (``renew`` is the fix), else passes."""
    now = today or dt.datetime.now(dt.UTC)
    days = (not_after - now).total_seconds() / 86400
    when = not_after.strftime("%Y-%m-%d")
    if days < 0:
        return Check(name, False, f"expired on {when}", renew)
    if days < CERT_WARN_DAYS:
        return Check(name, True, f"expires on {when}, in {int(days)} days", renew, warn=True)
    return Check(name, True, f"valid until {when} ({int(days)} days)")
