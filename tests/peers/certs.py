"""TLS material for the test peers: one private test CA per process, and leaf certificates.

Contract:
- ``test_ca()`` returns the process-wide test CA (created on first use, thread-safe). Every
  peer in one test process is signed by the same CA, so one ``ca_file`` verifies Dovecot and
  the SMTP server alike.
- ``write_tls_files(folder, kind)`` writes ``cert.pem`` (leaf, then nothing else), ``key.pem``
  (unencrypted PKCS#8) and ``ca.pem`` (the test CA) into ``folder`` and returns their paths.
  The CA file is always the test CA, whatever the kind, so a client that verifies against it
  accepts exactly the "valid" kind:

  ============  ==========================================  ===================================
  kind          leaf                                        what a verifying client reports
  ============  ==========================================  ===================================
  valid         localhost + IP 127.0.0.1, CA-signed, in date  nothing: the handshake succeeds
  expired       localhost + IP 127.0.0.1, CA-signed, expired  "certificate has expired"
  wrong_host    mail.example.invalid only, CA-signed        "Hostname mismatch"/"IP address..."
  self_signed   localhost + IP 127.0.0.1, signs itself      "self-signed certificate"
  ============  ==========================================  ===================================

Keys are ECDSA P-256: generating them takes microseconds (RSA 2048 takes tens of
milliseconds each), and Dovecot, aiosmtpd and Python's ssl all accept them. The extensions
follow what OpenSSL's strict verification (Python 3.13's ``VERIFY_X509_STRICT``) expects:
key identifiers on both certificates, key usages, and serverAuth on the leaf.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CertKind = Literal["valid", "expired", "wrong_host", "self_signed"]
CERT_KINDS: tuple[CertKind, ...] = get_args(CertKind)

# The names a "valid" leaf is good for: what clients in the tests connect to.
LOCAL_HOSTNAME = "localhost"
LOCAL_IP = "127.0.0.1"
# A name no client ever connects to (RFC 2606 reserves .invalid).
WRONG_HOSTNAME = "mail.example.invalid"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files a server presents and a client verifies against."""

    cert_file: Path
    key_file: Path
    ca_file: Path


@dataclass(frozen=True)
class TestCertificateAuthority:
    """A CA that exists only in this process; its key never touches the disk."""

    __test__ = False  # a "Test..." class that pytest must not collect

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        """The CA certificate as PEM, for a client's trust store."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, kind: CertKind) -> tuple[bytes, bytes]:
        """Return ``(certificate_pem, private_key_pem)`` for a server leaf of ``kind``."""
        if kind not in CERT_KINDS:
            raise ValueError(f"unknown certificate kind {kind!r}; expected one of {CERT_KINDS}")
        now = _now()
        not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        if kind == "expired":
            # Expired a month ago, after a validity period that was otherwise normal.
            not_before, not_after = (
                now - datetime.timedelta(days=90),
                now - datetime.timedelta(days=30),
            )
        dns_names, ip_addresses = [LOCAL_HOSTNAME], [LOCAL_IP]
        if kind == "wrong_host":
            dns_names, ip_addresses = [WRONG_HOSTNAME], []

        leaf_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
        self_signed = kind == "self_signed"
        issuer_name = subject if self_signed else self.certificate.subject
        signing_key = leaf_key if self_signed else self.key
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]

        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
                critical=False,
            )
        )
        certificate = builder.sign(signing_key, hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.PEM), _key_pem(leaf_key)


_ca_lock = threading.Lock()
_ca: TestCertificateAuthority | None = None


def test_ca() -> TestCertificateAuthority:
    """Return the process-wide test CA, creating it on first call."""
    global _ca
    with _ca_lock:
        if _ca is None:
            _ca = _create_ca()
        return _ca


test_ca.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


def write_tls_files(folder: Path, kind: CertKind) -> TlsFiles:
    """Write a fresh leaf of ``kind``, its key and the test CA into ``folder`` (created).

    The key file is mode 0600; callers that run a server as another user must make it
    readable to that user (Dovecot reads it as root, so it needs nothing more).
    """
    folder.mkdir(parents=True, exist_ok=True)
    authority = test_ca()
    cert_pem, key_pem = authority.issue(kind)
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", folder / "ca.pem")
    files.cert_file.write_bytes(cert_pem)
    files.key_file.touch(mode=0o600)
    files.key_file.write_bytes(key_pem)
    files.ca_file.write_bytes(authority.pem)
    return files


def _create_ca() -> TestCertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RecruitMail tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, "RecruitMail test CA"),
        ]
    )
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Valid long before any "expired" leaf starts, so only the leaf is ever out of date.
        .not_valid_before(now - datetime.timedelta(days=365))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TestCertificateAuthority(key=key, certificate=certificate)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
