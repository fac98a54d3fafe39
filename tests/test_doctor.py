"""``scimflow doctor`` against both emulators: every failure is produced for real and must name its fix."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from rich.console import Console

from scimflow.commands.doctor_cmd import print_checks, run_doctor
from scimflow.connectors.graph import clear_app_cache
from scimflow.connectors.http import ssl_context
from scimflow.doctor import Check, run_checks
from scimflow.emulators.host import EmulatorHost
from scimflow.emulators.pki import self_signed_certificate, write_private
from scimflow.emulators.serve import free_port, serve_in_thread

FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def graph_data() -> dict[str, Any]:
    """The worked example's Graph tenant."""
    return json.loads((FIXTURES / "graph.json").read_text())


@pytest.fixture(scope="module")
def so_data() -> dict[str, Any]:
    """The worked example's SuperOffice tenant."""
    return json.loads((FIXTURES / "superoffice.json").read_text())


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, graph_data: dict[str, Any], so_data: dict[str, Any]
) -> Iterator[EmulatorHost]:
    """One emulator pair for the tests that only vary the config (they never change the emulators or its files)."""
    with EmulatorHost(
        graph_data, so_data, tmp_path_factory.mktemp("shared") / "emu", rules=FIXTURES / "rules.yaml"
    ) as h:
        yield h
        clear_app_cache()


@pytest.fixture
def host(tmp_path: Path, graph_data: dict[str, Any], so_data: dict[str, Any]) -> Iterator[EmulatorHost]:
    """Both emulators on the worked example, the Entra app using a client secret."""
    with EmulatorHost(graph_data, so_data, tmp_path / "emu", rules=FIXTURES / "rules.yaml") as h:
        yield h
        clear_app_cache()  # close msal's keep-alive connections before the servers stop


@pytest.fixture
def cert_host(tmp_path: Path, graph_data: dict[str, Any], so_data: dict[str, Any]) -> Iterator[EmulatorHost]:
    """Both emulators, the Entra app using a certificate credential."""
    with EmulatorHost(
        graph_data, so_data, tmp_path / "emu", rules=FIXTURES / "rules.yaml", entra_auth="certificate"
    ) as h:
        yield h
        clear_app_cache()


def settings(host: EmulatorHost, which: str, **changes: Any) -> None:
    """Turn an emulator's runtime knobs (``POST <origin>/_emulator/settings``)."""
    origin = host.graph_origin if which == "graph" else host.superoffice_origin
    with httpx.Client(verify=ssl_context(host.ca_bundle), trust_env=False) as client:
        client.post(f"{origin}/_emulator/settings", json=changes).raise_for_status()


def variant(host: EmulatorHost, name: str, edit: Any) -> Path:
    """A copy of the host's config, beside it (so ``file:`` references still resolve), changed by ``edit``."""
    data = yaml.safe_load(host.config_path.read_text())
    edit(data)
    path = host.config_path.with_name(name)
    path.write_text(yaml.safe_dump(data))
    return path


def by_name(checks: list[Check], prefix: str) -> Check:
    """The one check whose name starts with ``prefix``."""
    found = [c for c in checks if c.name.startswith(prefix)]
    assert len(found) == 1, f"{prefix!r}: {[c.name for c in checks]}"
    return found[0]


def failing(checks: list[Check]) -> list[Check]:
    """The checks that failed (not skipped)."""
    return [c for c in checks if c.status == "fail"]


def make_ca(common_name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A throw-away CA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca: tuple[rsa.RSAPrivateKey, x509.Certificate], *, not_before: dt.datetime, not_after: dt.datetime, folder: Path
) -> tuple[Path, Path]:
    """A 127.0.0.1 server certificate signed by ``ca`` with the given validity; returns (cert, key) files."""
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca[0], hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file = folder / "leaf.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = write_private(
        folder / "leaf.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return cert_file, key_file


def expired_certificate(common_name: str) -> tuple[bytes, bytes, str]:
    """A key and a self-signed certificate that expired yesterday, with its SHA-1 thumbprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), thumb


def use_entra_certificate(
    host: EmulatorHost, key_pem: bytes, cert_pem: bytes, thumb: str, *, register: bool = True
) -> Path:
    """Make the app's credential this certificate (registered on the Graph emulator unless told not to)."""
    write_private(host.folder / "other-key.pem", key_pem)
    write_private(host.folder / "other-cert.pem", cert_pem)
    if register:
        settings(host, "graph", certificate_thumbprints={thumb: cert_pem.decode()})

    def edit(d: dict[str, Any]) -> None:
        d["entra"]["certificate"] = {
            "private_key": "file:other-key.pem",
            "public_certificate": "file:other-cert.pem",
            "thumbprint": thumb,
        }

    return variant(host, "other-cert.yaml", edit)


# ---------------------------------------------------------------------------------------------- tests


def test_everything_passes_on_the_emulators(shared: EmulatorHost, capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh emulator pair passes every check, so doctor exits 0 and says so."""
    assert run_doctor(shared.config_path) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out
    checks = run_checks(shared.config_path)
    assert not failing(checks)
    for name in (
        "Entra token",
        "Graph permission User.Read.All",
        "Graph permission GroupMember.Read.All",
        "SuperOffice system user",
        "SuperOffice Web API",
        "clock vs Graph",
        "clock vs SuperOffice",
    ):
        assert by_name(checks, name).status == "ok", by_name(checks, name)


def test_certificate_credential_passes(cert_host: EmulatorHost) -> None:
    """With a certificate credential, its expiry, thumbprint and key pair are checked and the token works."""
    checks = run_checks(cert_host.config_path)
    assert not failing(checks)
    assert by_name(checks, "Entra certificate credential").status == "ok"
    assert by_name(checks, "Entra token").detail.startswith("token acquired with the certificate")


def test_emulator_tls_certificates_warn_before_expiry(shared: EmulatorHost) -> None:
    """The emulators' 30-day server certificates are within the 30-day window: a warning, not a failure."""
    checks = run_checks(shared.config_path)
    tls = [c for c in checks if c.name.startswith("TLS certificate of")]
    assert len(tls) == 2
    assert all(c.status == "warn" and "expires on" in c.detail and c.fix for c in tls)


def test_wrong_client_secret_is_named(host: EmulatorHost) -> None:
    """A wrong client secret fails the token check with Entra's code, the fix names the secret, the value is never shown."""
    wrong = "not-the-secret-value-1234"
    write_private(host.folder / "entra-client-secret", wrong)
    checks = run_checks(host.config_path)
    token = by_name(checks, "Entra token")
    assert token.status == "fail"
    assert "7000215" in token.detail
    assert token.fix is not None and "client secret is wrong" in token.fix and "file:entra-client-secret" in token.fix
    assert by_name(checks, "Graph permission User.Read.All").status == "skip"
    assert all(wrong not in f"{c.detail} {c.fix}" for c in checks)


def test_unregistered_certificate_is_named(cert_host: EmulatorHost) -> None:
    """A certificate the app does not know fails the token check and tells how to upload it."""
    settings(cert_host, "graph", certificate_thumbprints={})
    token = by_name(run_checks(cert_host.config_path), "Entra token")
    assert token.status == "fail" and "700027" in token.detail
    assert token.fix is not None and "upload" in token.fix and "thumbprint" in token.fix


def test_entra_certificate_expiring_soon_warns(cert_host: EmulatorHost) -> None:
    """A certificate credential valid for 5 more days warns and names the renewal, while the token still works."""
    key_pem, cert_pem, thumb = self_signed_certificate("scimflow soon", days=5)
    path = use_entra_certificate(cert_host, key_pem, cert_pem, thumb)
    checks = run_checks(path)
    cert = by_name(checks, "Entra certificate credential")
    assert cert.status == "warn" and "expires on" in cert.detail
    assert cert.fix is not None and "new certificate" in cert.fix
    assert by_name(checks, "Entra token").status == "ok"


def test_entra_certificate_expired_fails(cert_host: EmulatorHost) -> None:
    """An expired certificate credential fails both its own check and the token, each naming the fix."""
    key_pem, cert_pem, thumb = expired_certificate("scimflow old")
    path = use_entra_certificate(cert_host, key_pem, cert_pem, thumb)
    checks = run_checks(path)
    cert = by_name(checks, "Entra certificate credential")
    assert cert.status == "fail" and "expired on" in cert.detail
    assert cert.fix is not None and "new certificate" in cert.fix
    token = by_name(checks, "Entra token")
    assert token.status == "fail" and "700027" in token.detail and token.fix and "upload" in token.fix


def test_thumbprint_mismatch_names_the_right_one(cert_host: EmulatorHost) -> None:
    """A thumbprint that is not the certificate's fails and the fix gives the right value."""
    data = yaml.safe_load(cert_host.config_path.read_text())
    right = data["entra"]["certificate"]["thumbprint"]

    def edit(d: dict[str, Any]) -> None:
        d["entra"]["certificate"]["thumbprint"] = "00" * 20

    cert = by_name(run_checks(variant(cert_host, "thumb.yaml", edit)), "Entra certificate credential")
    assert cert.status == "fail"
    assert cert.fix == f"set entra.certificate.thumbprint to {right}"


def test_untrusted_ca_says_set_ca_bundle(shared: EmulatorHost, tmp_path: Path) -> None:
    """With a ca_bundle that did not issue the servers' certificates, both endpoints fail as untrusted."""
    _, other = make_ca("some other CA")
    bundle = tmp_path / "other-ca.pem"
    bundle.write_bytes(other.public_bytes(serialization.Encoding.PEM))

    def edit(d: dict[str, Any]) -> None:
        d["ca_bundle"] = str(bundle)

    checks = run_checks(variant(shared, "other-ca.yaml", edit))
    reach = [c for c in checks if c.name.startswith("reach ")]
    assert len(reach) == 2
    assert all(c.status == "fail" and "not trusted" in c.detail and c.fix and "set ca_bundle" in c.fix for c in reach)
    assert by_name(checks, "Entra token").status == "skip"
    assert by_name(checks, "SuperOffice system user").status == "skip"


def test_unloadable_ca_bundle_is_reported(shared: EmulatorHost, tmp_path: Path) -> None:
    """A ca_bundle that is not a certificate file fails its own check with the fix."""
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("hello")

    def edit(d: dict[str, Any]) -> None:
        d["ca_bundle"] = str(bad)

    check = by_name(run_checks(variant(shared, "bad-ca.yaml", edit)), "ca_bundle")
    assert check.status == "fail" and check.fix and "PEM" in check.fix


def test_refused_port_is_distinguished(shared: EmulatorHost) -> None:
    """A port nobody listens on is reported as refused, names the config keys, and skips what depends on it."""
    port = free_port()

    def edit(d: dict[str, Any]) -> None:
        d["superoffice"]["login_url"] = f"https://127.0.0.1:{port}/login"
        d["superoffice"]["webapi_url"] = f"https://127.0.0.1:{port}/Cust12345"

    checks = run_checks(variant(shared, "refused.yaml", edit))
    reach = by_name(checks, f"reach SuperOffice login + SuperOffice Web API (127.0.0.1:{port})")
    assert reach.status == "fail" and "connection refused" in reach.detail
    assert reach.fix is not None and "superoffice.login_url" in reach.fix
    assert by_name(checks, "SuperOffice system user").status == "skip"
    assert by_name(checks, "clock vs SuperOffice").status == "skip"
    assert by_name(checks, "Entra token").status == "ok"


def test_unknown_host_is_a_dns_failure(shared: EmulatorHost) -> None:
    """A host name that does not resolve is reported as DNS, with the key to check."""

    def edit(d: dict[str, Any]) -> None:
        d["entra"]["graph_url"] = "https://graph.scimflow-test.invalid"

    reach = by_name(run_checks(variant(shared, "dns.yaml", edit)), "reach Graph (graph.scimflow-test.invalid:443)")
    assert reach.status == "fail" and reach.detail.startswith("DNS:")
    assert reach.fix is not None and "entra.graph_url" in reach.fix


def test_expired_server_certificate_fails(shared: EmulatorHost, tmp_path: Path) -> None:
    """A server whose TLS certificate expired fails the reach check with the renewal (or NTP) fix."""
    ca = make_ca("expired test CA")
    now = dt.datetime.now(dt.UTC)
    cert, key = make_leaf(
        ca, not_before=now - dt.timedelta(days=60), not_after=now - dt.timedelta(days=1), folder=tmp_path / "leaf"
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(shared.ca_bundle.read_bytes() + ca[1].public_bytes(serialization.Encoding.PEM))
    served = serve_in_thread(shared.superoffice.app, certfile=str(cert), keyfile=str(key))
    try:

        def edit(d: dict[str, Any]) -> None:
            d["ca_bundle"] = str(bundle)
            d["superoffice"]["login_url"] = f"{served.origin}/login"
            d["superoffice"]["webapi_url"] = f"{served.origin}/Cust12345"

        reach = by_name(
            run_checks(variant(shared, "expired-tls.yaml", edit)),
            f"reach SuperOffice login + SuperOffice Web API (127.0.0.1:{served.port})",
        )
    finally:
        served.stop()
    assert reach.status == "fail" and "expired" in reach.detail
    assert reach.fix is not None and "renew" in reach.fix and "NTP" in reach.fix


def test_server_certificate_expiring_in_five_days_warns(shared: EmulatorHost, tmp_path: Path) -> None:
    """A server certificate valid for 5 more days passes the reach check but warns with the days left."""
    ca = make_ca("soon test CA")
    now = dt.datetime.now(dt.UTC)
    cert, key = make_leaf(
        ca, not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=5), folder=tmp_path / "leaf"
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(shared.ca_bundle.read_bytes() + ca[1].public_bytes(serialization.Encoding.PEM))
    served = serve_in_thread(shared.superoffice.app, certfile=str(cert), keyfile=str(key))
    try:

        def edit(d: dict[str, Any]) -> None:
            d["ca_bundle"] = str(bundle)
            d["superoffice"]["login_url"] = f"{served.origin}/login"
            d["superoffice"]["webapi_url"] = f"{served.origin}/Cust12345"

        checks = run_checks(variant(shared, "soon-tls.yaml", edit))
    finally:
        served.stop()
    tls = by_name(checks, "TLS certificate of SuperOffice login")
    assert tls.status == "warn" and "in 4 days" in tls.detail
    assert by_name(checks, "SuperOffice Web API").status == "ok"


def test_missing_secret_file_names_the_reference(host: EmulatorHost) -> None:
    """A file: secret that does not exist fails, naming the reference and the path, and skips its login."""
    (host.folder / "superoffice-system-user-token").unlink()
    checks = run_checks(host.config_path)
    secret = by_name(checks, "secret superoffice.system_user_token")
    assert secret.status == "fail" and "file:superoffice-system-user-token" in secret.detail
    assert secret.fix is not None and "chmod 600" in secret.fix
    assert by_name(checks, "SuperOffice system user").status == "skip"


def test_unset_env_secret_names_the_variable(shared: EmulatorHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """An env: secret whose variable is unset fails and the fix names the variable."""
    monkeypatch.delenv("SCIMFLOW_DOCTOR_TEST_SECRET", raising=False)

    def edit(d: dict[str, Any]) -> None:
        d["entra"]["client_secret"] = "env:SCIMFLOW_DOCTOR_TEST_SECRET"

    secret = by_name(run_checks(variant(shared, "env.yaml", edit)), "secret entra.client_secret")
    assert secret.status == "fail"
    assert secret.fix is not None and "SCIMFLOW_DOCTOR_TEST_SECRET" in secret.fix


def test_prefect_secret_without_server_names_the_block(shared: EmulatorHost) -> None:
    """A prefect-secret reference that cannot be read names the block and PREFECT_API_URL in the fix."""

    def edit(d: dict[str, Any]) -> None:
        d["superoffice"]["client_secret"] = "prefect-secret:scimflow-contoso-so-app-token"

    secret = by_name(run_checks(variant(shared, "block.yaml", edit)), "secret superoffice.client_secret")
    assert secret.status == "fail" and "prefect-secret:scimflow-contoso-so-app-token" in secret.detail
    assert (
        secret.fix is not None and "'scimflow-contoso-so-app-token'" in secret.fix and "PREFECT_API_URL" in secret.fix
    )


def test_xml_private_key_says_convert(host: EmulatorHost) -> None:
    """A SuperOffice key left in the Developer Portal's XML format fails with the conversion fix."""
    write_private(host.folder / "superoffice-app.pem", "<RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue>")
    secret = by_name(run_checks(host.config_path), "secret superoffice.private_key")
    assert secret.status == "fail" and "convert it to PEM" in secret.detail


def test_readable_secret_file_fails(host: EmulatorHost) -> None:
    """A secret file others can read fails (as it does for every verb), naming the mode and the chmod 600."""
    path = host.folder / "superoffice-client-secret"
    path.chmod(0o644)
    secret = by_name(run_checks(host.config_path), "secret superoffice.client_secret")
    assert secret.status == "fail" and "mode 0644" in secret.detail and f"chmod 600 {path}" in secret.detail


def test_revoked_system_user_token(host: EmulatorHost) -> None:
    """When SuperOffice no longer knows the system user token, the fix is the admin's approval or a new token."""
    settings(host, "superoffice", system_user_token="scimflow-revoked-0000")
    checks = run_checks(host.config_path)
    login = by_name(checks, "SuperOffice system user")
    assert login.status == "fail" and "system user token" in login.detail.lower()
    assert login.fix is not None and "tenant admin must approve" in login.fix and "revoked" in login.fix
    assert by_name(checks, "SuperOffice Web API").status == "skip"


def test_wrong_application_token(host: EmulatorHost) -> None:
    """An app token SuperOffice does not know points at superoffice.client_secret."""
    settings(host, "superoffice", app_token="another-app-token")
    login = by_name(run_checks(host.config_path), "SuperOffice system user")
    assert login.status == "fail"
    assert login.fix is not None and "superoffice.client_secret" in login.fix


def test_key_not_registered_for_the_app(host: EmulatorHost) -> None:
    """A private key that is not the app's fails the signature and the fix names the Developer Portal key."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(
        host.folder / "superoffice-app.pem",
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    login = by_name(run_checks(host.config_path), "SuperOffice system user")
    assert login.status == "fail"
    assert login.fix is not None and "superoffice.private_key" in login.fix


def test_webapi_url_without_the_tenant(shared: EmulatorHost) -> None:
    """A Web API URL naming another tenant fails the API check with how the URL must look."""

    def edit(d: dict[str, Any]) -> None:
        d["superoffice"]["webapi_url"] = d["superoffice"]["webapi_url"].replace("Cust12345", "Cust99999")

    api = by_name(run_checks(variant(shared, "ctx.yaml", edit)), "SuperOffice Web API")
    assert api.status == "fail"
    assert api.fix is not None and "webapi_url" in api.fix


def test_missing_user_read_all(host: EmulatorHost) -> None:
    """Without User.Read.All, /users answers 403 Authorization_RequestDenied and doctor names the grant."""
    settings(host, "graph", app_permissions=["GroupMember.Read.All"])
    checks = run_checks(host.config_path)
    users = by_name(checks, "Graph permission User.Read.All")
    assert users.status == "fail" and "Authorization_RequestDenied" in users.detail
    assert users.fix is not None and "User.Read.All" in users.fix and "admin consent" in users.fix
    assert by_name(checks, "Graph permission GroupMember.Read.All").status == "ok"


def test_missing_groupmember_read_all(host: EmulatorHost) -> None:
    """Without GroupMember.Read.All, /groups answers 403 and doctor names that permission, not the other."""
    settings(host, "graph", app_permissions=["User.Read.All"])
    checks = run_checks(host.config_path)
    groups = by_name(checks, "Graph permission GroupMember.Read.All")
    assert groups.status == "fail" and "Authorization_RequestDenied" in groups.detail
    assert groups.fix is not None and "GroupMember.Read.All" in groups.fix and "admin consent" in groups.fix
    assert by_name(checks, "Graph permission User.Read.All").status == "ok"


def test_clock_skew_says_ntp(host: EmulatorHost) -> None:
    """Servers whose Date is 10 minutes off fail the clock checks with the NTP fix."""
    settings(host, "graph", clock_offset=600)
    settings(host, "superoffice", clock_offset=-600)
    checks = run_checks(host.config_path)
    for name in ("clock vs Graph", "clock vs SuperOffice"):
        clock = by_name(checks, name)
        seconds = re.search(r"(\d+) s (?:ahead of|behind)", clock.detail)
        assert clock.status == "fail" and seconds is not None and 590 <= int(seconds.group(1)) <= 610
        assert clock.fix is not None and "NTP" in clock.fix


def test_failure_exits_1_and_prints_the_fix(host: EmulatorHost, capsys: pytest.CaptureFixture[str]) -> None:
    """run_doctor exits 1 on any failure and prints the fix in its table."""
    settings(host, "superoffice", system_user_token="scimflow-revoked-0000")
    assert run_doctor(host.config_path) == 1
    out = capsys.readouterr().out
    assert "tenant admin must approve" in " ".join(out.split())
    assert "check(s) failed" in out


def test_broken_config_stops_early(tmp_path: Path) -> None:
    """A config that does not validate is one failing check naming the key; nothing else runs."""
    path = tmp_path / "scimflow.yaml"
    path.write_text("entra: {tenant_id: x}\n")
    checks = run_checks(path)
    assert [c.status for c in checks] == ["fail"]
    assert "entra.client_id" in checks[0].detail


def test_print_checks_marks_each_status() -> None:
    """The table shows a distinct mark for ok, warn, fail and skip."""
    console = Console(record=True, width=160)
    print_checks(
        [
            Check("a", True, "fine"),
            Check("b", True, "soon", "renew", warn=True),
            Check("c", False, "broken", "fix it"),
            Check("d", False, "skipped: no token", skipped=True),
        ],
        console,
    )
    text = console.export_text()
    for mark in ("✓", "!", "✗", "–"):
        assert mark in text
    assert "1 check(s) failed, 1 warning(s)" in text


# ------------------------------------------------------------------------------------------ SCIM target


SCIM_NAMES = ["SCIM token", "SCIM Groups", "SCIM listing", "SCIM ETags", "SCIM dialect"]


@pytest.fixture
def scim_host(request: pytest.FixtureRequest, tmp_path: Path, graph_data: dict[str, Any]) -> Iterator[EmulatorHost]:
    """The Graph emulator and the SCIM emulator over HTTPS (``target: scim``); ``request.param`` is the dialect
    (default entra), or a dict with ``dialect`` and emulator ``settings``."""
    param = getattr(request, "param", "entra")
    spec: dict[str, Any] = param if isinstance(param, dict) else {"dialect": param}
    with EmulatorHost(
        graph_data,
        {},
        tmp_path / "emu",
        rules=FIXTURES / "rules.yaml",
        target="scim",
        scim_dialect=spec["dialect"],
        scim_settings=spec.get("settings"),
    ) as h:
        yield h
        clear_app_cache()


@pytest.mark.parametrize("scim_host", ["entra", "rfc"], indirect=True)
def test_scim_target_passes_on_the_emulator(scim_host: EmulatorHost, capsys: pytest.CaptureFixture[str]) -> None:
    """Against the SCIM emulator in either dialect every check passes, no SuperOffice check runs, no token is shown."""
    checks = run_checks(scim_host.config_path)
    assert not failing(checks), [(c.name, c.detail) for c in failing(checks)]
    assert not [c for c in checks if "SuperOffice" in c.name or c.status == "skip"]
    assert [c.name for c in checks if c.name.startswith("SCIM")] == SCIM_NAMES
    assert by_name(checks, "secret scim.token").detail == "file:scim-token resolves"
    assert by_name(checks, "reach SCIM server").status == "ok"
    assert "empty ListResponse" in by_name(checks, "SCIM token").detail
    assert by_name(checks, "SCIM listing").status == "ok"
    dialect = scim_host.scim.settings.dialect
    etags, fits = by_name(checks, "SCIM ETags"), by_name(checks, "SCIM dialect")
    assert fits.status == "ok"
    if dialect == "rfc":
        assert "If-Match" in etags.detail and "carry" in etags.detail
        assert fits.detail.startswith("rfc fits")
    else:
        assert "never sends If-Match" in etags.detail
        assert "dialect: rfc would fit too" in fits.detail
    assert run_doctor(scim_host.config_path) == 0
    out = capsys.readouterr().out
    assert scim_host.secrets is not None and scim_host.secrets.scim_token
    assert scim_host.secrets.scim_token not in out
    assert "all checks passed" in out


def test_scim_refused_token_fails_with_the_fix(scim_host: EmulatorHost, capsys: pytest.CaptureFixture[str]) -> None:
    """A token the SCIM server refuses (401) fails the token check, says where the token comes from, shows no token."""
    wrong = "not-the-token-" + "x" * 20
    write_private(scim_host.folder / "wrong-token", wrong)
    path = variant(scim_host, "wrong-token.yaml", lambda d: d["scim"].update(token="file:wrong-token"))
    checks = run_checks(path)
    token = by_name(checks, "SCIM token")
    assert token.status == "fail"
    assert "refused the token (401)" in token.detail
    assert token.fix is not None and "SCIM Sync Config" in token.fix and "file:wrong-token" in token.fix
    assert [c.status for c in checks if c.name in SCIM_NAMES[1:]] == ["skip"] * 4
    assert failing(checks) == [token]
    assert scim_host.scim.stats()["unauthorized"] >= 1
    assert run_doctor(path) == 1
    out = capsys.readouterr().out
    assert wrong not in out
    assert scim_host.secrets is not None and scim_host.secrets.scim_token
    assert scim_host.secrets.scim_token not in out


@pytest.mark.parametrize(
    "scim_host",
    [
        {"dialect": "entra", "settings": {"list_users": False}},
        {"dialect": "rfc", "settings": {"list_users": False, "list_refused_status": 400}},
    ],
    indirect=True,
)
def test_scim_listing_refused_warns(scim_host: EmulatorHost) -> None:
    """A server that refuses to list users (403 or 400) is a warning saying users are looked up by filter."""
    checks = run_checks(scim_host.config_path)
    assert not failing(checks), [(c.name, c.detail) for c in failing(checks)]
    listing = by_name(checks, "SCIM listing")
    assert listing.status == "warn"
    assert "refused" in listing.detail and "one filter GET each" in listing.detail
    assert by_name(checks, "SCIM token").status == "ok"
    assert scim_host.scim.stats()["refused_listings"] == 1


def test_scim_base_url_without_scim_is_named(scim_host: EmulatorHost) -> None:
    """A base_url with no SCIM server behind it (404 on /Users) fails the token check and names scim.base_url."""
    path = variant(
        scim_host, "wrong-base.yaml", lambda d: d["scim"].update(base_url=scim_host.scim_origin + "/nothing/v2")
    )
    token = by_name(run_checks(path), "SCIM token")
    assert token.status == "fail"
    assert "no SCIM Users endpoint" in token.detail
    assert token.fix is not None and "scim.base_url" in token.fix and "/nothing/v2" in token.fix


def test_scim_server_down_skips_the_scim_checks(scim_host: EmulatorHost) -> None:
    """With the SCIM server's port closed the reach check fails and every SCIM check is skipped, not failed."""
    port = free_port()
    path = variant(scim_host, "down.yaml", lambda d: d["scim"].update(base_url=f"https://127.0.0.1:{port}/scim/v2"))
    checks = run_checks(path)
    assert "connection refused" in by_name(checks, "reach SCIM server").detail
    assert [c.status for c in checks if c.name in SCIM_NAMES] == ["skip"] * 5
