"""Sealing of service passwords: AES-256-GCM under a key derived from the secret key.

``PasswordSealer.seal`` consumes a clear password and emits ``v1:<urlsafe base64 of nonce |
ciphertext+tag>``; only that text is ever recorded. ``unseal`` reverses it for the handler that
sets the password on a node, and raises ``SealError`` for anything it did not seal.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"
_NONCE_BYTES = 12
_KEY_INFO = b"hostwright/password-sealing/v1"
# binds every sealed text to its purpose, so it cannot be replayed as another kind of secret
_ASSOCIATED_DATA = b"hostwright:service-password"


class SealError(ValueError):
    """A sealed text is malformed, of an unknown version, or was sealed under another key."""


class PasswordSealer:
    """Seals and unseals passwords with one secret key (``HOSTWRIGHT_SECRET_KEY``)."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("the secret key must not be empty")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "PasswordSealer(<secret>)"

    def seal(self, password: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, password.encode(), _ASSOCIATED_DATA)
        return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def unseal(self, text: str) -> str:
        version, _, payload = text.partition(":")
        if version != _VERSION or not payload:
            raise SealError("not a sealed password of a known version")
        try:
            raw = base64.urlsafe_b64decode(payload.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise SealError("a sealed password is not valid base64") from exc
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        if len(nonce) != _NONCE_BYTES or not sealed:
            raise SealError("a sealed password is too short")
        try:
            return self._aead.decrypt(nonce, sealed, _ASSOCIATED_DATA).decode()
        except InvalidTag as exc:
            raise SealError("a sealed password does not open with this key") from exc
