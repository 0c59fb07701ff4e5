"""The values automatic SSL passes between its parts: what a certificate says, where it goes,
what a pre-flight found, what an order asks the CA for, and the cadence it is checked at.

Plain frozen values, no I/O: the certificate tools (``handlers/x509_tools.py``) make
``CertificateFacts`` from PEM, the pre-flight (``handlers/ssl_preflight.py``) makes a
``PreflightVerdict``, the rate-limit model (``domain/rate_limits.py``) answers an
``OrderIntent`` with an ``Admission``, and the ``Certificate`` aggregate records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

InstallKind = Literal["web", "mail"]


@dataclass(frozen=True)
class CertificateFacts:
    """What a certificate says of itself, read from its PEM."""

    serial: str  # hex, lower case, no leading zeros
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]  # the DNS names of its subjectAltName, in its order
    common_name: str | None  # None for a certificate without one (Let's Encrypt's tlsserver)
    issuer: str  # the issuer's distinguished name as RFC 4514 text
    ari_id: str | None  # the ARI certificate id (b64url(AKI).b64url(serial)), None without AKI
    fingerprint: str  # SHA-256 of the DER, hex

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before


@dataclass(frozen=True)
class PemBundle:
    """A certificate and the intermediates that chain it to a root (Hestia's ``.ca``)."""

    certificate: str
    chain: str


@dataclass(frozen=True)
class InstallTarget:
    """Where a certificate is installed: a web or mail domain of a Hestia user on a node."""

    server_id: str
    kind: InstallKind
    user: str
    domain: str


@dataclass(frozen=True)
class DnsTarget:
    """A zone on one of our DNS nodes, where a DNS-01 TXT record can be put."""

    server_id: str
    user: str
    zone: str


@dataclass(frozen=True)
class Http01Spot:
    """Where an HTTP-01 challenge file is put for a name: a web domain's document root."""

    server_id: str
    user: str
    docroot: str


@dataclass(frozen=True)
class PreflightVerdict:
    """What the checks before any CA request found.

    ``ok`` False carries the ``check`` that failed (``dns``, ``caa``, ``http01``) and a reason
    a person reads ("AAAA 2001:db8::1 is not this server"). ``served`` is a valid certificate
    the node already serves for every name (nothing to issue); ``dns01`` says every
    authoritative server of the zone is one of ours (a DNS-01 challenge can be answered)."""

    ok: bool
    check: str | None = None
    reason: str | None = None
    served: CertificateFacts | None = None
    dns01: bool = False
    authorities: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaaRecord:
    """One CAA record (RFC 8659): ``flags`` (128 = critical), ``tag`` and ``value`` as served."""

    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        return bool(self.flags & 128)


@dataclass(frozen=True)
class CaaSet:
    """The CAA records found at one name while walking up the tree (empty: none there)."""

    name: str
    records: tuple[CaaRecord, ...] = ()


@dataclass(frozen=True)
class OrderIntent:
    """A certificate order as the rate-limit model sees it."""

    names: tuple[str, ...]
    registered_domains: tuple[str, ...]  # per the Public Suffix List, one per distinct domain
    replaces: str | None = None  # an ARI renewal's ``replaces``: exempt from the limits


@dataclass(frozen=True)
class Admission:
    """Whether an order may go to the CA now; if not, why and when it may."""

    allowed: bool
    reason: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class SslCadence:
    """How often certificates are checked (runtime settings).

    Fast mode: ``fast_attempts`` checks every ``fast_interval_s`` after provisioning or an
    Issue now; then every ``recheck_interval_s`` while not issued; an issued certificate is
    looked at every ``active_interval_s`` at most. ``freeze_after`` failures in a row freeze
    the name for ``freeze_s``."""

    fast_attempts: int = 10
    fast_interval_s: int = 30
    recheck_interval_s: int = 3600
    active_interval_s: int = 86400
    freeze_after: int = 5
    freeze_s: int = 6 * 3600
