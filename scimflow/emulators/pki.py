"""A throw-away certificate authority for the emulators: a CA and a loopback server certificate.

The CA certificate is written beside the generated config and named by its ``ca_bundle``, so clients
keep TLS verification on and trust exactly this CA in addition to the system store. Keys and
certificates are built by :mod:`scimflow.certs`, as ``scimflow setup`` builds the production ones.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from scimflow import certs
from scimflow.files import write_private

__all__ = ["TlsFiles", "make_tls_files", "self_signed_certificate", "write_private"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and the server's certificate chain and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(folder: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> TlsFiles:
    """Create a CA and a server certificate for ``hosts`` in ``folder``; return their paths."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = certs.new_key()
    ca_name = certs.common_name("scimflow emulator CA")
    ca_cert = (
        certs.certificate_builder(ca_name, ca_name, ca_key.public_key(), days=30)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(certs.key_usage(digital_signature=True, cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = certs.new_key()
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    srv_cert = (
        certs.certificate_builder(certs.common_name(hosts[0]), ca_name, srv_key.public_key(), days=30)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(folder / "emulator-ca.pem", folder / "emulator-server.pem", folder / "emulator-server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(srv_cert.public_bytes(pem))
    write_private(files.server_key, certs.private_key_pem(srv_key))
    return files


def self_signed_certificate(common_name: str, *, days: int = 365) -> tuple[bytes, bytes, str]:
    """A key pair and self-signed client certificate for an emulated Entra app credential, made as
    ``scimflow setup entra-certificate`` makes the production one (:func:`scimflow.certs.client_certificate`).

    Returns ``(private_key_pem, certificate_pem, sha1_thumbprint_hex_upper)``.
    """
    key_pem, cert_pem = certs.client_certificate(common_name, days)
    thumb, _ = certs.thumbprints(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER))
    return key_pem, cert_pem, thumb
