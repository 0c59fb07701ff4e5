"""What certificate a server presents for a name, checked as a browser would check it.

``verifying_context(extra_roots_pem)`` emits a client TLS context trusting the system's roots
and ``HOSTWRIGHT_TRUSTED_ROOTS``, checking host names. ``served(address, port, name, context,
timeout_s)`` makes one handshake with SNI ``name`` to ``address:port`` and emits the verified
leaf (PEM, which ``handlers.x509_tools.facts`` reads) or why there is none.

Python 3.11 has no ``get_verified_chain``: OpenSSL verifies the chain during the handshake,
so a leaf that comes back has already chained to a trusted root and matched ``name``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Served:
    """A handshake's outcome: the verified leaf certificate (PEM), or why there is none."""

    pem: str | None
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
    return Served(ssl.DER_cert_to_PEM_cert(der))
