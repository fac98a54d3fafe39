"""Building RSA keys and X.509 certificates with ``cryptography``: the one place both ``scimflow setup
entra-certificate`` (a production Entra app credential) and the emulators' throw-away CA
(:mod:`scimflow.emulators.pki`) make them.

Only the building is shared: which certificates exist (a self-signed client certificate here, a CA and a
loopback server certificate in the emulators) is each caller's own. Nothing here writes a file.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "certificate_builder",
    "client_certificate",
    "common_name",
    "key_usage",
    "new_key",
    "private_key_pem",
    "thumbprints",
]

#: How far back a new certificate's validity starts (clock skew between this machine and a verifier).
BACKDATE = dt.timedelta(minutes=5)


def new_key(key_size: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (public exponent 65537)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """``key`` as an unencrypted PKCS#8 PEM (the caller writes it owner-only)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def common_name(name: str) -> x509.Name:
    """The distinguished name ``CN=name``."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def certificate_builder(
    subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey, *, days: int
) -> x509.CertificateBuilder:
    """A builder for ``subject``'s certificate signed by ``issuer``: a random serial number, valid from
    :data:`BACKDATE` ago for ``days`` days; the caller adds its extensions and signs."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
    )


def key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    """A ``KeyUsage`` extension allowing only signatures, and with ``cert_sign`` certificates and CRLs too."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def client_certificate(subject: str, days: int, key_size: int = 2048) -> tuple[bytes, bytes]:
    """A new RSA key (PKCS#8 PEM) and a self-signed client certificate (PEM) for ``CN=subject``, valid
    ``days``: not a CA, for digital signatures, extended key usage client authentication (what an Entra
    app registration's certificate credential signs its client assertions with)."""
    key = new_key(key_size)
    name = common_name(subject)
    cert = (
        certificate_builder(name, name, key.public_key(), days=days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return private_key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def thumbprints(cert_der: bytes) -> tuple[str, str]:
    """The SHA-1 thumbprint as Entra shows it (hex, upper case) and as ``x5t`` (base64url, no padding)."""
    digest = hashlib.sha1(cert_der, usedforsecurity=False).digest()  # Entra thumbprints are SHA-1 by definition
    return digest.hex().upper(), base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
