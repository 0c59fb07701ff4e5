"""The ACME requests a certificate cost, read from pebble's log, beside the protocol's minimum.

Pebble logs every request it handles (``POST /order-plz -> calling handler()``); this sorts
them by what they are for, by pebble 2.4's paths. Nothing in hostwright is wrapped or hooked:
the CA's own count is the one that matters.

The minimum (RFC 8555) for one certificate of ``k`` names, with the account made already and
a nonce kept from the previous reply (every reply carries one, so ``newNonce`` is amortised
to 0 per certificate):

  newOrder 1 + authorization fetch k + challenge response k + an order poll 1 (the client
  must learn the authorizations are valid before it may finalize; it may poll the order
  instead of each authorization) + finalize 1 + certificate download 1  =  2k + 4

The order poll after finalize is counted 0: a CA may answer finalize with the order valid.
For the bench's certificates (web: the domain and ``www.``; mail: ``mail.`` and
``webmail.``) k = 2, so 8.

Consumes pebble's log text; emits counts per kind.
"""

from __future__ import annotations

import re
from collections import Counter

REQUEST = re.compile(r"\s(GET|POST|HEAD) (\S+) -> calling handler\(\)")
# pebble 2.4's paths (wfe.go), in the order a certificate uses them
KINDS = (
    ("/dir", "directory"),
    ("/nonce-plz", "newNonce"),
    ("/sign-me-up", "newAccount"),
    ("/my-account/", "account"),
    ("/order-plz", "newOrder"),
    ("/authZ/", "authorization"),
    ("/chalZ/", "challenge"),
    ("/my-order/", "order poll"),
    ("/finalize-order/", "finalize"),
    ("/certZ/", "certificate"),
)
KIND_NAMES = tuple(kind for _, kind in KINDS)


def minimum_per_certificate(names: int) -> int:
    """The protocol's minimum for a certificate of ``names`` names (module docstring)."""
    return 2 * names + 4


def request_counts(log_text: str) -> Counter[str]:
    """Requests pebble handled, by kind (``other`` for a path not listed)."""
    counts: Counter[str] = Counter()
    for match in REQUEST.finditer(log_text):
        path = match.group(2)
        kind = next((k for prefix, k in KINDS if path.startswith(prefix)), "other")
        counts[kind] += 1
    return counts
