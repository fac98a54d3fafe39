"""Run-time settings of the Graph emulator (the knobs of ``POST /_emulator/settings``).

The first block of fields is the shared shape fixed in docs/internals.md; the second block holds the
Graph-specific knobs the tests and the bench need (deterministic throttle storms, token revocation,
delta-token expiry, delta page sizes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["GraphEmulatorSettings"]

#: Directory delta tokens live 7 days (reference/graph.md §2).
DELTA_TOKEN_LIFETIME = 7 * 24 * 3600.0


@dataclass
class GraphEmulatorSettings:
    """What the emulator accepts and how it misbehaves. Every field can be changed at run time."""

    tenant_id: str = "contoso.onmicrosoft.com"
    client_id: str = "00000000-0000-0000-0000-0000000000a1"
    client_secret: str | None = None  # accepted secret (None: secrets refused)
    certificate_thumbprints: dict[str, bytes] = field(default_factory=dict)  # SHA-1 hex (upper) -> cert PEM
    token_lifetime: int = 3599
    latency: float = 0.0  # seconds from a request's arrival to its answer, processing included (serve.answer_at)
    throttle_rate: float = 0.0  # fraction of Graph requests answered 429
    retry_after: str = "1"  # Retry-After value sent with 429
    error_rate: float = 0.0  # fraction answered 503
    rate_limit_rps: float | None = None  # token bucket; beyond it 429 with Retry-After

    # Graph-specific knobs (not in the shared shape).
    seed: int | None = None  # seeds the random fault injection (throttle_rate, error_rate)
    throttle_next: int = 0  # the next N Graph requests are answered 429 (a deterministic storm)
    revoke_tokens_after: int | None = None  # revoke every issued token after N more Graph requests (once)
    expire_delta_tokens: bool = False  # every $deltatoken presented is treated as expired
    delta_expired_status: int = 410  # 410 (resyncRequired, Location header) or 400 (syncStateNotFound)
    delta_token_lifetime: float = DELTA_TOKEN_LIFETIME
    delta_page_size: int = 200  # objects (or member slices) per delta page: server-chosen in Graph
    delta_members_per_slice: int = 100  # members@delta entries per group object on one page
    # Graph application permissions granted to the app (roles in its token); missing ones give 403
    app_permissions: list[str] = field(default_factory=lambda: ["User.Read.All", "GroupMember.Read.All"])
    clock_offset: float = 0.0  # seconds added to the Date header (a server whose clock is off)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def update(self, changes: dict[str, Any]) -> list[str]:
        """Apply ``changes`` (JSON values) after checking names and types; return the changed names.

        Raises:
            ValueError: an unknown field or a value of the wrong type (nothing is changed then).
        """
        known = self.field_names()
        unknown = sorted(set(changes) - known)
        if unknown:
            msg = f"unknown settings: {', '.join(unknown)}"
            raise ValueError(msg)
        staged: dict[str, Any] = {}
        for name, value in changes.items():
            staged[name] = _coerce(name, value)
        for name, value in staged.items():
            setattr(self, name, value)
        return sorted(staged)


_FLOATS = {"latency", "throttle_rate", "error_rate", "delta_token_lifetime", "clock_offset"}
_INTS = {"token_lifetime", "throttle_next", "delta_expired_status", "delta_page_size", "delta_members_per_slice"}
_OPT_INTS = {"revoke_tokens_after", "seed"}
_STRS = {"tenant_id", "client_id"}


def _coerce(name: str, value: Any) -> Any:
    def bad() -> ValueError:
        return ValueError(f"setting {name}: wrong type {type(value).__name__}")

    if name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if name in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if name in _OPT_INTS:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad()
        return value
    if name == "rate_limit_rps":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise bad()
        return None if value is None else float(value)
    if name == "retry_after":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad()
        return str(value)
    if name == "client_secret":
        if value is not None and not isinstance(value, str):
            raise bad()
        return value
    if name == "expire_delta_tokens":
        if not isinstance(value, bool):
            raise bad()
        return value
    if name == "certificate_thumbprints":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad()
        return {k.upper(): (v.encode() if isinstance(v, str) else bytes(v)) for k, v in value.items()}
    if name == "app_permissions":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad()
        return list(value)
    if name in _STRS:
        if not isinstance(value, str):
            raise bad()
        return value
    raise bad()
