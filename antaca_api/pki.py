"""Antaca's certificate authority for partners' mutual TLS, and the server's TLS context.

The CA signs partners' CSRs (client certificates) and the server's own certificate. Keys live in
the key directory (`ANTACA_KEY_DIR`), created for development on first start, never committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from antaca_api.domain_errors import InvalidCsr
from antaca_auth.keyfiles import check_private, read_private, write_private

CLIENT_CERT_DAYS = 365
CA_DAYS = 3650
DEVELOPMENT_CA_NAME = "Antaca Development CA"


def _write_private(path: Path, data: bytes) -> None:
    write_private(path, data, replace=True)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    fingerprint: str  # SHA-256 of the DER encoding, hex
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    pem: str


def describe(cert: x509.Certificate) -> IssuedCertificate:
    return IssuedCertificate(
        serial=format(cert.serial_number, "x"),
        fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
    )


class CertificateAuthority:
    """A CA key and certificate, able to sign client and server certificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, directory: Path,
                 cert_file: Path | None = None):
        self.key = key
        self.cert = cert
        self.directory = directory
        self.cert_file = cert_file  # an operator's own CA certificate; else <directory>/ca.pem

    @classmethod
    def load_files(cls, cert_file: Path, key_file: Path, directory: Path) -> CertificateAuthority:
        """An operator's own CA (its key file must be 0600); `directory` keeps what is generated."""
        key = serialization.load_pem_private_key(read_private(key_file), password=None)
        return cls(key, x509.load_pem_x509_certificate(cert_file.read_bytes()), directory,
                   cert_file)

    @property
    def is_development(self) -> bool:
        """Whether this is the generated development CA (refused in production)."""
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return bool(names) and names[0].value == DEVELOPMENT_CA_NAME

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def cert_path(self) -> Path:
        return self.cert_file or self.directory / "ca.pem"

    @classmethod
    def load_or_create(cls, directory: Path,
                       name: str = DEVELOPMENT_CA_NAME) -> tuple[CertificateAuthority, bool]:
        """The CA in `directory`, created there when absent; also says whether it was created."""
        key_path, cert_path = directory / "ca-key.pem", directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(read_private(key_path), password=None)
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()), directory), False
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _pem_key(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, directory), True

    def _sign(self, builder: x509.CertificateBuilder, public_key, days: int) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        return (
            builder.issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def sign_client_csr(self, csr_pem: str, common_name: str) -> x509.Certificate:
        """A client certificate for a CSR, its CN naming the holder (e.g. "partner:<id>"); the CSR's subject is not trusted."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
            # Parsed lazily: a malformed key or signature only fails here.
            signature_valid = csr.is_signature_valid
            public_key = csr.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise InvalidCsr() from None
        if not signature_valid:
            raise InvalidCsr("the CSR's signature does not verify")
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
            raise InvalidCsr("RSA keys must have at least 2048 bits")
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise InvalidCsr("only RSA and EC keys are accepted")
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Antaca client"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        return self._sign(builder, public_key, CLIENT_CERT_DAYS)

    def server_certificate(self, hosts: list[str]) -> tuple[Path, Path]:
        """The server's certificate and key in the CA directory, created for `hosts` when absent."""
        cert_path, key_path = self.directory / "server.pem", self.directory / "server-key.pem"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        cert = self._sign(builder, key.public_key(), CLIENT_CERT_DAYS)
        _write_private(key_path, _pem_key(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def server_ssl_context(self, hosts: list[str],
                           chain: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        """TLS for the server: asks for a client certificate, accepts only ones this CA signed.

        A client without a certificate still connects (customer and admin channels); partner
        routes then refuse it. Revocation is checked per request against the database.
        `chain`: the operator's own server certificate and key files, instead of a generated one.
        """
        cert_path, key_path = chain or self.server_certificate(hosts)
        check_private(key_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)  # TLS 1.3's own suites are all AEAD with ECDHE
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
        context.load_cert_chain(cert_path, key_path)
        context.load_verify_locations(cafile=str(self.cert_path))
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


# TLS 1.2's suites: forward secrecy (ECDHE) and AEAD only; no CBC, no RSA key exchange, no SHA-1.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


# Where each kind of client certificate is recorded, and the column naming its holder.
CERTIFICATE_TABLES = {"partner": ("partner_certificates", "partner_id"),
                      "network": ("network_certificates", "network_id")}


async def issue_client_certificate(conn, ca: CertificateAuthority, csr_pem: str, holder: str,
                                   holder_id, *, background_cpu=None) -> IssuedCertificate:
    """Sign a CSR for a partner or a network and record it, in the caller's transaction.

    Given a BackgroundCpu (antaca_api.background_cpu), the signing runs there: the CSR's own
    signature check and the CA's signature are public-key work on a key the caller chose.
    """
    table, column = CERTIFICATE_TABLES[holder]
    common_name = f"{holder}:{holder_id}"
    if background_cpu is None:
        certificate = ca.sign_client_csr(csr_pem, common_name)
    else:
        certificate = await background_cpu.run(ca.sign_client_csr, csr_pem, common_name)
    issued = describe(certificate)
    await conn.execute(
        f"""INSERT INTO {table} (serial, {column}, fingerprint, subject, not_before, not_after, certificate)
            VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        issued.serial, holder_id, issued.fingerprint, issued.subject, issued.not_before, issued.not_after,
        issued.pem,
    )
    return issued
