"""A small certificate authority for test harnesses: a root, and leaf certificates it signs.

Consumes names (DNS names, IP addresses) and the wanted shape of a leaf (validity, serial, with
or without a Common Name, its own key); emits PEM. Pebble's HTTPS API needs a certificate the
test trusts (``ops/devtools/pebble.py``), the ACME double serves HTTPS and issues with one
(``tests/support/acme_double.py``), and the certificate tools' tests build the certificates
they refuse. Keys are EC P-256: cheap on a shared machine. Not for production: nothing here is
kept secret.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Leaf:
    """A signed leaf: its certificate and its private key (PKCS#8), both PEM."""

    certificate_pem: str
    key_pem: str

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_text(self.certificate_pem)
        key_path.write_text(self.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


# a root and an intermediate alike: they sign certificates and CRLs
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


class MiniCa:
    """A self-signed root that signs leaves; its ``certificate_pem`` is what a client trusts."""

    def __init__(self, common_name: str = "hostwright test root", *, now: datetime | None = None):
        self.now = now or datetime.now(UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(common_name)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(hours=1))
            .not_valid_after(self.now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                _CA_KEY_USAGE,
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def intermediate(self, common_name: str = "hostwright test intermediate") -> MiniCa:
        """A CA signed by this one (its ``certificate`` chains to this root)."""
        child = MiniCa.__new__(MiniCa)
        child.now = self.now
        child.key = ec.generate_private_key(ec.SECP256R1())
        child.certificate = self._sign(
            _name(common_name),
            child.key.public_key(),
            serial=x509.random_serial_number(),
            not_before=self.now - timedelta(hours=1),
            not_after=self.now + timedelta(days=1825),
            ca=True,
        )
        return child

    def leaf(
        self,
        names: Sequence[str],
        *,
        common_name: str | None = "",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
        public_key: CertificatePublicKeyTypes | None = None,
    ) -> Leaf:
        """A server certificate for ``names`` (SANs). ``common_name`` "" uses the first name;
        None leaves the subject empty, as Let's Encrypt's ``tlsserver`` profile does. Given a
        ``public_key``, the leaf certifies it and ``key_pem`` is empty."""
        key = None if public_key is not None else ec.generate_private_key(ec.SECP256R1())
        subject_key = public_key if key is None else key.public_key()
        assert subject_key is not None
        cn = names[0] if common_name == "" else common_name
        certificate = self._sign(
            _name(cn) if cn else x509.Name([]),
            subject_key,
            serial=serial if serial is not None else x509.random_serial_number(),
            not_before=not_before or self.now - timedelta(minutes=5),
            not_after=not_after or self.now + timedelta(days=90),
            ca=False,
            san=_san(names),
        )
        return Leaf(
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            _key_pem(key) if key is not None else "",
        )

    def _sign(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        *,
        serial: int,
        not_before: datetime,
        not_after: datetime,
        ca: bool,
        san: x509.SubjectAlternativeName | None = None,
    ) -> x509.Certificate:
        signer: CertificateIssuerPrivateKeyTypes = self.key
        issuer_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if ca:
            builder = builder.add_extension(
                _CA_KEY_USAGE,
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        if san is not None:
            builder = builder.add_extension(san, critical=not subject)
        return builder.sign(signer, hashes.SHA256())
