"""What certificate a server presents for a name, checked as a browser would check it.

``verifying_context(extra_roots_pem)`` emits a client TLS context trusting the system's roots
and ``HOSTWRIGHT_TRUSTED_ROOTS``, checking host names. ``served(address, port, name, context,
timeout_s)`` makes one handshake with SNI ``name`` to ``address:port`` and emits the verified
leaf (DER) or why there is none. ``certificate_facts(der)`` reads a certificate into
``CertificateFacts``.

Python 3.11 has no ``get_verified_chain``: OpenSSL verifies the chain during the handshake,
so a leaf that comes back has already chained to a trusted root and matched ``name``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from domain.ssl_types import CertificateFacts


@dataclass(frozen=True)
class Served:
    """A handshake's outcome: the verified leaf certificate, or why there is none."""

    der: bytes | None
    problem: str | None = None


def verifying_context(extra_roots_pem: str = "") -> ssl.SSLContext:
    """A client context: system roots plus ``extra_roots_pem``, host names checked."""
    context = ssl.create_default_context()
    if extra_roots_pem.strip():
        context.load_verify_locations(cadata=extra_roots_pem)
    return context


async def served(
    address: str, port: int, name: str, context: ssl.SSLContext, timeout_s: float
) -> Served:
    """The certificate ``address:port`` presents for SNI ``name``, verified by ``context``."""
    where = f"{address}:{port}"
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=context, server_hostname=name),
            timeout_s,
        )
    except ssl.SSLCertVerificationError as exc:
        return Served(
            None,
            f"{where} presents for {name} a certificate that fails: "
            f"{exc.verify_message or exc.reason}",
        )
    except ssl.SSLError as exc:
        return Served(None, f"TLS with {where} for {name} failed: {exc.reason or exc}")
    except TimeoutError:
        return Served(
            None, f"{where} did not complete a TLS handshake for {name} in {timeout_s:g} s"
        )
    except OSError as exc:
        return Served(None, f"cannot connect to {where} for {name}: {exc.strerror or exc}")
    try:
        peer = writer.get_extra_info("ssl_object")
        der = peer.getpeercert(binary_form=True) if peer is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        return Served(None, f"{where} presented no certificate for {name}")
    return Served(der)


def certificate_facts(der: bytes) -> CertificateFacts:
    """What a DER certificate says of itself."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertificateFacts(
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=names,
        common_name=str(common[0].value) if common else None,
        issuer=cert.issuer.rfc4514_string(),
        ari_id=_ari_id(cert),
        fingerprint=hashlib.sha256(der).hexdigest(),
    )


def _ari_id(cert: x509.Certificate) -> str | None:
    """RFC 9773's certificate id: b64url(AKI keyIdentifier).b64url(serial as DER INTEGER)."""
    try:
        aki = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    except x509.ExtensionNotFound:
        return None
    key_id = getattr(aki, "key_identifier", None)
    if not key_id:
        return None
    serial = cert.serial_number
    # a DER INTEGER is two's complement: a high first bit needs a leading zero byte
    serial_bytes = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    return f"{_b64url(key_id)}.{_b64url(serial_bytes)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
