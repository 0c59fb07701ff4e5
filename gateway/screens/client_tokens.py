"""The signed, expiring token that opens one service's client area (``/client/{id}?token=``).

``mint`` consumes the screens' signing key, a service id and an expiry time and emits a
URL-safe token: ``<expiry as Unix seconds>.<HMAC-SHA256 of purpose, service id and expiry>``.
The service id is not in the token, only under its signature: the token opens the service
whose path it is presented on, or nothing. ``check`` consumes the key, the service id of the
path, the token and the time now, and emits the token's expiry, or raises ``TokenRefused``
(``invalid`` for a token altered, malformed or made for another service — compared in
constant time — and ``expired`` for a genuine one past its time). The signature covers a
purpose of its own, so no other signature made with the same key (a console session) is
ever a client token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

_PURPOSE = b"hostwright/client-area\x00"
_MAX_TOKEN_CHARS = 128


class TokenRefused(Exception):
    """The token does not open the service: ``reason`` is ``invalid`` or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def mint(key: bytes, service_id: str, expires_at: datetime) -> str:
    """A token for ``service_id`` valid until ``expires_at`` (to the second, rounded down)."""
    return _token(key, service_id, int(expires_at.timestamp()))


def check(key: bytes, service_id: str, token: str | None, now: datetime) -> datetime:
    """The token's expiry when it opens ``service_id`` at ``now``; raises ``TokenRefused``."""
    if not token or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenRefused("invalid")
    expiry_text = token.split(".")[0]
    if not (expiry_text.isascii() and expiry_text.isdigit() and len(expiry_text) <= 12):
        raise TokenRefused("invalid")
    expiry = int(expiry_text)
    # the whole text compared, so no other spelling of the same bytes passes
    if not hmac.compare_digest(token.encode(), _token(key, service_id, expiry).encode()):
        raise TokenRefused("invalid")
    expires_at = datetime.fromtimestamp(expiry, UTC)
    if now >= expires_at:
        raise TokenRefused("expired")
    return expires_at


def _token(key: bytes, service_id: str, expiry: int) -> str:
    message = _PURPOSE + service_id.encode() + b"\x00" + str(expiry).encode("ascii")
    signature = hmac.new(key, message, hashlib.sha256).digest()
    return f"{expiry}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
