"""Sealing of service passwords and private keys: AES-256-GCM under a key derived from the
secret key.

``PasswordSealer.seal`` consumes a clear password and emits ``v2:<key id>:<urlsafe base64 of
nonce | ciphertext+tag>``; only that text is ever recorded. The key id names the key it was
sealed under (a short digest derived apart from the sealing key, so it tells nothing of
either), which is what lets the key be rotated: the sealer seals under the current key
(``HOSTWRIGHT_SECRET_KEY``) and unseals under it or any retired one
(``HOSTWRIGHT_OLD_SECRET_KEYS``), and ``hostwright rotate-key`` re-seals what is still needed
(ops/adapters/password_rotation.py). ``v1:<payload>`` texts, sealed before key ids existed,
still unseal under whichever of those keys sealed them. ``unseal`` raises ``SealError`` for
anything none of its keys sealed.

Each sealer has a purpose, bound into every text as AEAD associated data: a password sealer
(``purpose="service-password"``, the default) and a private-key sealer
(``purpose="private-key"``: ACME account, order and custom certificate keys) derive the same
key, so a key id names the same secret key for both, yet neither opens the other's texts —
a sealed key can never be replayed as a password, nor a password as a key.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_KEY_INFO = b"hostwright/password-sealing/v1"
_KEY_ID_INFO = b"hostwright/password-sealing/key-id"
_KEY_ID_BYTES = 6  # 12 hex digits
# binds every sealed text to its purpose, so it cannot be replayed as another kind of secret
PURPOSES = {"service-password": "password", "private-key": "private key"}  # → what it is called
_ASSOCIATED_DATA = b"hostwright:service-password"  # v1 texts: passwords only


class SealError(ValueError):
    """A sealed text is malformed, of an unknown version, or was sealed under another key."""


class _Key:
    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("the secret key must not be empty")
        self.aead = AESGCM(_derive(secret_key, _KEY_INFO, 32))
        self.key_id = _derive(secret_key, _KEY_ID_INFO, _KEY_ID_BYTES).hex()


class PasswordSealer:
    """Seals under one secret key; unseals under it and any retired ones, texts of its own
    purpose only."""

    def __init__(
        self,
        secret_key: str,
        retired_keys: Iterable[str] = (),
        *,
        purpose: str = "service-password",
    ) -> None:
        self._bind(purpose)
        self._current = _Key(secret_key)
        self._keys = {self._current.key_id: self._current}
        for retired in retired_keys:
            key = _Key(retired)
            self._keys.setdefault(key.key_id, key)

    def __repr__(self) -> str:
        return (
            f"PasswordSealer(purpose={self.purpose!r}, key_id={self.key_id!r}, "
            f"keys={len(self._keys)})"
        )

    def _bind(self, purpose: str) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"no sealing purpose {purpose!r}; known: {', '.join(PURPOSES)}")
        self.purpose = purpose
        self._noun = PURPOSES[purpose]
        self._bound = f"hostwright:{purpose}".encode("ascii")

    def for_purpose(self, purpose: str) -> PasswordSealer:
        """A sealer with the same keys for another purpose (``hostwright rotate-key`` re-seals
        private keys with the keys it was given for passwords)."""
        twin = copy.copy(self)
        twin._bind(purpose)
        return twin

    @property
    def key_id(self) -> str:
        """The id of the current key: every new text is sealed under it."""
        return self._current.key_id

    def seal(self, password: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        key = self._current
        sealed = key.aead.encrypt(nonce, password.encode(), self._associated_data(key.key_id))
        return f"v2:{key.key_id}:{_b64(nonce + sealed)}"

    def unseal(self, text: str) -> str:
        return self._open(text)[0]

    def key_id_of(self, text: str) -> str:
        """The id of the key ``text`` was sealed under (SealError if no key of ours opens it)."""
        return self._open(text)[1]

    def reseal(self, text: str) -> str | None:
        """``text`` sealed afresh under the current key; None when it is sealed under it
        already. SealError when none of the keys opens it."""
        password, key_id = self._open(text)
        if key_id == self.key_id and text.startswith("v2:"):
            return None
        return self.seal(password)

    def _open(self, text: str) -> tuple[str, str]:
        """The secret and the id of the key that opened it."""
        noun = self._noun
        version, _, rest = text.partition(":")
        if version == "v2":
            key_id, _, payload = rest.partition(":")
            key = self._keys.get(key_id)
            if key is None:
                raise SealError(
                    f"a {noun} is sealed under key {key_id[: _KEY_ID_BYTES * 2]!r}, which is "
                    "neither HOSTWRIGHT_SECRET_KEY nor one of HOSTWRIGHT_OLD_SECRET_KEYS"
                )
            opened = _decrypt(key, _payload(payload, noun), self._associated_data(key_id), noun)
            return opened, key_id
        if version == "v1" and self.purpose == "service-password":
            nonce_and_sealed = _payload(rest, noun)
            for key in self._keys.values():
                try:
                    return _decrypt(key, nonce_and_sealed, _ASSOCIATED_DATA, noun), key.key_id
                except SealError:
                    continue
            raise SealError("a sealed password does not open with any of the keys")
        raise SealError(f"not a sealed {noun} of a known version")

    def _associated_data(self, key_id: str) -> bytes:
        return self._bound + b":" + key_id.encode("ascii")


def private_key_sealer(secret_key: str, retired_keys: Iterable[str] = ()) -> PasswordSealer:
    """The sealer of private keys (ACME account, order and custom certificate keys)."""
    return PasswordSealer(secret_key, retired_keys, purpose="private-key")


def _derive(secret_key: str, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(
        secret_key.encode()
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _payload(text: str, noun: str) -> tuple[bytes, bytes]:
    if not text:
        raise SealError(f"a sealed {noun} is empty")
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SealError(f"a sealed {noun} is not valid base64") from exc
    nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    if len(nonce) != _NONCE_BYTES or not sealed:
        raise SealError(f"a sealed {noun} is too short")
    return nonce, sealed


def _decrypt(key: _Key, nonce_and_sealed: tuple[bytes, bytes], associated: bytes, noun: str) -> str:
    nonce, sealed = nonce_and_sealed
    try:
        return key.aead.decrypt(nonce, sealed, associated).decode()
    except InvalidTag as exc:
        raise SealError(f"a sealed {noun} does not open with this key") from exc


def signing_key(secret_key: str, purpose: str) -> bytes:
    """A key for signing (HMAC) what ``purpose`` hands out — client links, console sessions —
    derived from the secret key apart from the sealing keys, so no signature tells anything of
    them. Rotating the secret key invalidates every signature made under the old one."""
    if not secret_key:
        raise ValueError("the secret key must not be empty")
    return _derive(secret_key, b"hostwright/signing/" + purpose.encode("ascii"), 32)
