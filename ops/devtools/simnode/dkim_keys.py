"""The simulated node's DKIM keys: real RSA keys, made ahead of need when asked, read once.

``dkim_private_key(bits)`` emits a new key as PEM (one made ahead by ``make_dkim_keys_ahead``
if there is one); ``dkim_public_body(pem)`` consumes such a key and emits the ``p=`` part of
its DKIM record, the public key's PEM body on one line, as Hestia prints it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

# Keys made before they are asked for (``make_dkim_keys_ahead``), by size; each is used once.
_KEYS_AHEAD: dict[int, list[str]] = {}


def make_dkim_keys_ahead(bits: int, count: int) -> None:
    """Generate ``count`` keys now, for the next ``v-add-mail-domain[-dkim]`` calls: a
    benchmark's node would otherwise spend most of its CPU in RSA key generation, on the
    machine whose throughput is measured (a real node does it on its own CPU)."""
    _KEYS_AHEAD.setdefault(bits, []).extend(_new_rsa_key(bits) for _ in range(count))


def dkim_private_key(bits: int) -> str:
    """A new RSA key as PKCS#8 PEM (``openssl genrsa`` + the DKIM ``.pem``)."""
    ahead = _KEYS_AHEAD.get(bits)
    return ahead.pop() if ahead else _new_rsa_key(bits)


def _new_rsa_key(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    _PUBLIC_BODIES[pem] = _public_body(key.public_key())
    return pem


# The ``p=`` part of each key this process made or read: loading an RSA key checks it, which
# costs as much as making one.
_PUBLIC_BODIES: dict[str, str] = {}


def dkim_public_body(private_pem: str) -> str:
    """The ``p=`` part: the public key's PEM without its header lines, on one line."""
    body = _PUBLIC_BODIES.get(private_pem)
    if body is None:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        body = _PUBLIC_BODIES[private_pem] = _public_body(key.public_key())
    return body


def _public_body(key: PublicKeyTypes) -> str:
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "".join(line for line in pem.decode().splitlines() if "KEY-----" not in line)
