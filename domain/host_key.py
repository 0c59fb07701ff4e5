"""Host-key parsing: an OpenSSH public key line as pasted into ``POST /v1/servers``.

Consumes the raw ``host_key`` value; emits ``"<type> <base64>"`` (the comment dropped: it plays
no part in pinning) or raises InvalidInput. The base64 blob is decoded and its SSH wire format
checked against the declared type (ssh-ed25519, ssh-rsa of 2048 bits or more,
ecdsa-sha2-nistp256), so a truncated paste or a key of another type is caught at registration,
not at first connect. ``host_key_fingerprint`` gives a parsed key's fingerprint as OpenSSH
prints it (``ssh-keygen -lf``: ``SHA256:<base64, unpadded>``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from domain.errors import InvalidInput

_KEY_COMMENT = re.compile(r"^[\x20-\x7e]{1,200}$")
_MIN_RSA_BITS = 2048


def parse_host_key(raw: object) -> str:
    """An OpenSSH public key line → ``"<type> <base64>"``, or InvalidInput.

    The base64 blob is decoded and its wire format checked against the declared type, so a
    truncated paste or a key of another type is caught at registration, not at first connect.
    """
    if not isinstance(raw, str):
        raise InvalidInput("host_key must be a string like 'ssh-ed25519 AAAA… [comment]'")
    # one trailing newline is how a .pub file ends; anything else is refused, not trimmed
    line = raw[:-1] if raw.endswith("\n") else raw
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InvalidInput("host_key must be '<type> <base64> [comment]', one space apart")
    key_type, encoded = parts[0], parts[1]
    if len(parts) == 3 and not _KEY_COMMENT.fullmatch(parts[2]):
        raise InvalidInput("host_key's comment must be 1-200 printable ASCII characters")
    checker = _KEY_CHECKS.get(key_type)
    if checker is None:
        raise InvalidInput(f"host_key type must be one of {', '.join(_KEY_CHECKS)}")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("host_key is not valid base64") from exc
    fields = _wire_strings(blob)
    if fields is None or not fields or fields[0] != key_type.encode():
        raise InvalidInput(f"host_key's base64 does not encode an {key_type} key")
    problem = checker(fields[1:])
    if problem:
        raise InvalidInput(f"host_key: {problem}")
    return f"{key_type} {encoded}"


def host_key_fingerprint(host_key: str) -> str:
    """``SHA256:…`` of a key as ``parse_host_key`` returns it, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(host_key.split(" ")[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def _wire_strings(blob: bytes) -> list[bytes] | None:
    """Splits SSH wire format (uint32 length + bytes, repeated); None when malformed."""
    out = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            return None
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            return None
        out.append(blob[offset : offset + length])
        offset += length
    return out


def _check_ed25519(rest: list[bytes]) -> str | None:
    if len(rest) != 1 or len(rest[0]) != 32:
        return "an ssh-ed25519 key is one 32-byte value"
    return None


def _check_rsa(rest: list[bytes]) -> str | None:
    if len(rest) != 2:
        return "an ssh-rsa key is an exponent and a modulus"
    modulus_bits = int.from_bytes(rest[1], "big").bit_length()
    if modulus_bits < _MIN_RSA_BITS:
        return f"the ssh-rsa key has {modulus_bits} bits; at least {_MIN_RSA_BITS} are needed"
    return None


def _check_ecdsa_p256(rest: list[bytes]) -> str | None:
    # curve name, then an uncompressed point: 0x04 || X(32) || Y(32)
    if len(rest) != 2 or rest[0] != b"nistp256" or len(rest[1]) != 65 or rest[1][0] != 4:
        return "an ecdsa-sha2-nistp256 key is the curve name and a 65-byte point"
    return None


_KEY_CHECKS = {
    "ssh-ed25519": _check_ed25519,
    "ssh-rsa": _check_rsa,
    "ecdsa-sha2-nistp256": _check_ecdsa_p256,
}
