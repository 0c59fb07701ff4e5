"""Certificate tools: keys and CSRs for orders, facts read from PEM, and the checks a customer's
own certificate must pass.

Consumes PEM text (certificates, chains, private keys) and DNS names; emits PKCS#8 PEM keys,
DER CSRs, ``CertificateFacts`` and ``PemBundle`` (``domain/ssl_types.py``). ``check_custom``
raises ``CertificateRefused`` with a reason a person reads; no reason ever quotes the PEM it
was given (a private key must not reach a log or an API answer).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import DNSName
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from domain.ssl_policy import covers
from domain.ssl_types import CertificateFacts, PemBundle

KeyKind = Literal["ec-p256", "rsa-2048"]


class CertificateRefused(ValueError):
    """A certificate that cannot be installed; ``reason`` says why, without any PEM."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_key(kind: KeyKind = "ec-p256") -> str:
    """A fresh private key, PKCS#8 PEM, unencrypted (the caller seals it)."""
    key: PrivateKeyTypes
    if kind == "ec-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "rsa-2048":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"unknown key kind {kind!r}")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def csr_der(key_pem: str, names: Sequence[str]) -> bytes:
    """A CSR for ``names`` as subjectAltName only, no Common Name (CAs take the names from
    the SANs; Let's Encrypt's newer profiles carry none)."""
    if not names:
        raise ValueError("a CSR needs at least one name")
    key = _private_key(key_pem)
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(san, critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.DER)


def ari_id(certificate: x509.Certificate) -> str | None:
    """RFC 9773's certificate id: b64url(AKI keyIdentifier) "." b64url(serial as DER INTEGER
    content: big-endian two's complement, so a serial with its top bit set gains a 0x00)."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    if aki.key_identifier is None:
        return None
    serial = certificate.serial_number
    serial_der = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der)}"


def facts(pem: str) -> CertificateFacts:
    """What the first certificate in ``pem`` says of itself."""
    return facts_of(_certificates(pem, "the certificate")[0])


def facts_of(certificate: x509.Certificate) -> CertificateFacts:
    cns = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else None
    return CertificateFacts(
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        names=tuple(_dns_names(certificate)),
        common_name=cn if isinstance(cn, str) else None,
        issuer=certificate.issuer.rfc4514_string(),
        ari_id=ari_id(certificate),
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
    )


def split_fullchain(pem: str) -> PemBundle:
    """A CA's full chain (leaf first, then intermediates) as Hestia's ``.crt`` and ``.ca``."""
    leaf, *chain = _certificates(pem, "the full chain")
    return PemBundle(_pem(leaf), "".join(_pem(c) for c in chain))


def key_matches(certificate_pem: str, key_pem: str) -> bool:
    """True when the key is the private half of the certificate's public key."""
    certificate = _certificates(certificate_pem, "the certificate")[0]
    return _spki(certificate.public_key()) == _spki(_private_key(key_pem).public_key())


@dataclass(frozen=True)
class CheckedCustom:
    """A customer's certificate that passed: its facts and the files Hestia takes (the leaf
    alone as ``certificate``, the path built to a trusted root, issuer first and without
    the root, as ``chain``)."""

    facts: CertificateFacts
    bundle: PemBundle


def check_custom(
    certificate: str,
    private_key: str,
    chain: str,
    *,
    names: Sequence[str],
    roots_pem: str,
    now: datetime,
) -> CheckedCustom:
    """Checks a customer's certificate for ``names``; its facts and normalised files, or
    ``CertificateRefused``.

    A ``certificate`` holding a full chain is accepted: what follows the leaf joins ``chain``,
    in any order. The chain must lead from the leaf to one of ``roots_pem`` at ``now``; what
    is kept of it is that path, issuer first, without the root (Hestia refuses a ``.crt``
    of several certificates, or a ``.ca`` not starting with the leaf's issuer, for good)."""
    leaf, *more = _certificates(certificate, "the certificate")
    intermediates = more + (_certificates(chain, "the chain") if chain.strip() else [])
    key = _customer_key(private_key)
    if _spki(leaf.public_key()) != _spki(key.public_key()):
        raise CertificateRefused("the private key does not belong to the certificate")
    found = facts_of(leaf)
    missing = [n for n in names if not covers(found.names, n)]
    if missing:
        covered = ", ".join(found.names) or "no DNS names"
        raise CertificateRefused(
            f"the certificate does not cover {', '.join(missing)} (it covers {covered})"
        )
    if now < found.not_before:
        raise CertificateRefused(
            f"the certificate is not valid before {found.not_before:%F %T} UTC"
        )
    if now >= found.not_after:
        raise CertificateRefused(f"the certificate expired on {found.not_after:%F %T} UTC")
    path = _verify_chain(leaf, intermediates, names, roots_pem, now)
    between = path[1:-1]  # the built path is leaf, intermediates from its issuer up, root
    return CheckedCustom(found, PemBundle(_pem(leaf), "".join(_pem(c) for c in between)))


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    names: Sequence[str],
    roots_pem: str,
    now: datetime,
) -> list[x509.Certificate]:
    roots = _certificates(roots_pem, "the trusted roots bundle") if roots_pem.strip() else []
    if not roots:
        raise CertificateRefused("no trusted roots are configured to check the chain against")
    builder = PolicyBuilder().store(Store(roots)).time(now)
    # the names are covered (checked before); the verifier needs one concrete name
    subject = next((n for n in names if not n.startswith("*.")), None)
    if subject is None:
        subject = "hostwright-check" + names[0][1:] if names else _first_name(leaf)
    try:
        return builder.build_server_verifier(DNSName(subject)).verify(leaf, intermediates)
    except VerificationError as error:
        hint = "" if intermediates else "; is the intermediate chain missing?"
        raise CertificateRefused(
            f"the certificate's chain does not lead to a trusted root{hint} ({_first_line(error)})"
        ) from None


def _first_name(certificate: x509.Certificate) -> str:
    names = _dns_names(certificate)
    return names[0] if names else ""


def _customer_key(pem: str) -> PrivateKeyTypes:
    if "ENCRYPTED" in pem:
        raise CertificateRefused("the private key is encrypted; upload it without a passphrase")
    if pem.count("PRIVATE KEY-----") != 2:
        raise CertificateRefused("exactly one PEM private key is expected")
    try:
        return _private_key(pem)
    except TypeError:
        raise CertificateRefused(
            "the private key is encrypted; upload it without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateRefused("the private key is not a readable PEM private key") from None


def _private_key(pem: str) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _certificates(pem: str, what: str) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        found = []
    if not found:
        raise CertificateRefused(f"{what} is not readable: no PEM certificate found")
    return found


def _dns_names(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
