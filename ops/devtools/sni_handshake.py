"""The certificate a server presents for one name: a TLS handshake with SNI, verified by the
caller's context (the demo's checks, the SSL bench and the SSL tests all ask this)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl


async def presented_der(context: ssl.SSLContext, ip: str, port: int, name: str) -> bytes:
    """The DER of the certificate ``ip:port`` presents for SNI ``name``; raises unless
    ``context`` verifies it for ``name``."""
    _, writer = await asyncio.open_connection(ip, port, ssl=context, server_hostname=name)
    try:
        der: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return der
