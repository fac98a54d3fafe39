"""Doctor's network checks: each endpoint answers over verified TLS (failures told apart), and the clock."""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from scimflow.config import Config
from scimflow.connectors.http import ssl_context
from scimflow.doctor._common import (
    CLOCK_FAIL_SECONDS,
    CLOCK_WARN_SECONDS,
    TIMEOUT,
    Check,
    expiry_check,
    skip,
    verifying_client,
)

__all__ = ["Endpoint", "check_clock", "check_endpoint", "endpoints"]


@dataclass(frozen=True)
class Endpoint:
    """A TLS endpoint to check: host, port and the config keys that name it."""

    host: str
    port: int
    keys: tuple[str, ...] = field(default_factory=tuple)
    tls: bool = True  # False: a plain http:// URL (allowed for a loopback SCIM server only)

    @property
    def label(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def service(self) -> str:
        """What runs there, from the config keys: e.g. ``Entra sign-in + Graph``."""
        names = {
            "entra.authority_host": "Entra sign-in",
            "entra.graph_url": "Graph",
            "superoffice.login_url": "SuperOffice login",
            "superoffice.webapi_url": "SuperOffice Web API",
            "scim.base_url": "SCIM server",
        }
        return " + ".join(names.get(k, k) for k in self.keys)


def endpoints(config: Config) -> list[Endpoint]:
    """The distinct host:port pairs of the configured URLs (Entra, and the target's), each with the keys that use it."""
    urls = {
        "entra.authority_host": config.entra.authority_host,
        "entra.graph_url": config.entra.graph_url,
    }
    if config.target == "scim":
        urls["scim.base_url"] = config.require_scim().base_url
    elif config.superoffice is not None:
        urls["superoffice.login_url"] = config.superoffice.login_url
        urls["superoffice.webapi_url"] = config.superoffice.webapi_url
    found: dict[tuple[str, int, bool], list[str]] = {}
    for key, url in urls.items():
        parts = urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme != "http"
        found.setdefault((host, parts.port or (443 if tls else 80), tls), []).append(key)
    return [Endpoint(h, p, tuple(keys), tls=tls) for (h, p, tls), keys in found.items()]


def check_endpoint(
    endpoint: Endpoint, ca_bundle: Path | None, *, timeout: float = TIMEOUT, today: dt.datetime | None = None
) -> list[Check]:
    """Connect with TLS verification on; tell DNS, refused, timeout and untrusted apart; check the certificate's expiry."""
    keys = ", ".join(endpoint.keys)
    name = f"reach {endpoint.service} ({endpoint.label})"
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [
            Check(
                name,
                False,
                f"DNS: cannot resolve {endpoint.host} ({exc.strerror})",
                f"check the host name in {keys}, and this machine's DNS",
            )
        ]
    try:
        context = ssl_context(ca_bundle)
    except (OSError, ssl.SSLError):
        return [skip(name, "the ca_bundle cannot be loaded")]
    address = infos[0][4]
    try:
        sock = socket.create_connection((str(address[0]), endpoint.port), timeout=timeout)
    except ConnectionRefusedError:
        return [
            Check(
                name,
                False,
                f"connection refused by {endpoint.label}",
                f"check the port in {keys} and that the service is running (and no firewall rejects it)",
            )
        ]
    except TimeoutError:
        return [
            Check(
                name,
                False,
                f"no answer from {endpoint.label} within {timeout:.0f} s",
                f"a firewall or proxy drops the connection: allow outbound HTTPS to {endpoint.label}",
            )
        ]
    except OSError as exc:
        return [
            Check(
                name,
                False,
                f"cannot connect to {endpoint.label}: {exc.strerror or type(exc).__name__}",
                "check this machine's network route to the service",
            )
        ]
    if not endpoint.tls:
        sock.close()
        return [Check(name, True, "answers over plain HTTP (allowed for a loopback host only; no TLS to verify)")]
    try:
        with sock, context.wrap_socket(sock, server_hostname=endpoint.host) as tls:
            peer = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return [_untrusted(name, endpoint, exc, keys)]
    except (ssl.SSLError, OSError) as exc:
        return [
            Check(
                name,
                False,
                f"TLS handshake with {endpoint.label} failed: {getattr(exc, 'reason', None) or exc}",
                f"check that {keys} is an https:// URL of a TLS port",
            )
        ]
    checks = [Check(name, True, f"TLS ({version}) verified")]
    not_after = (peer or {}).get("notAfter")
    if isinstance(not_after, str):
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC)
        checks.append(
            expiry_check(
                f"TLS certificate of {endpoint.service}",
                expires,
                today,
                renew="the service's operator must renew its TLS certificate (for the emulators: restart `scimflow emulate`)",
            )
        )
    return checks


def _untrusted(name: str, endpoint: Endpoint, exc: ssl.SSLCertVerificationError, keys: str) -> Check:
    code = getattr(exc, "verify_code", None)
    message = getattr(exc, "verify_message", None) or str(exc)
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return Check(
            name,
            False,
            f"the TLS certificate of {endpoint.label} has expired",
            "the service must renew its certificate; if it is current, this machine's clock is wrong (sync it with NTP)",
        )
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return Check(
            name,
            False,
            f"the TLS certificate of {endpoint.label} is not for {endpoint.host}",
            f"use the host name the certificate names in {keys}",
        )
    return Check(
        name,
        False,
        f"TLS certificate of {endpoint.label} not trusted: {message}",
        "set ca_bundle in the config to the CA that issued it (e.g. your TLS-inspecting proxy's CA); "
        "verification stays on",
    )


def check_clock(
    service: str, url: str, ca_bundle: Path | None, *, now: dt.datetime | None = None, timeout: float = TIMEOUT
) -> Check:
    """Compare the ``Date`` header of a response from ``url`` with local UTC."""
    name = f"clock vs {service}"
    try:
        with verifying_client(ca_bundle) as client:
            response = client.get(url, timeout=timeout)
            local = now or dt.datetime.now(dt.UTC)
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return skip(name, f"no response ({type(exc).__name__})")
    dates = response.headers.get_list("date")
    if not dates:
        return Check(name, True, f"not checked: {service} sent no Date header", warn=True)
    try:
        # the last Date is the application's own (a server may prepend its default one)
        remote = email.utils.parsedate_to_datetime(dates[-1])
    except (TypeError, ValueError):
        return Check(name, True, f"not checked: unreadable Date header {dates[-1]!r}", warn=True)
    if remote.tzinfo is None:
        remote = remote.replace(tzinfo=dt.UTC)
    offset = (local - remote).total_seconds()
    where = "ahead of" if offset > 0 else "behind"
    text = f"local clock {abs(offset):.0f} s {where} {service}"
    if abs(offset) > CLOCK_FAIL_SECONDS:
        return Check(
            name,
            False,
            text + " (tokens are refused beyond 5 minutes)",
            "sync the clock with NTP (e.g. `timedatectl set-ntp true`)",
        )
    if abs(offset) > CLOCK_WARN_SECONDS:
        return Check(name, True, text, "sync the clock with NTP", warn=True)
    if abs(offset) <= 2:  # Date has a resolution of one second, plus the round trip
        text = f"in step with {service} (within 2 s)"
    return Check(name, True, text)
