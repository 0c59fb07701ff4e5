"""What automatic SSL takes from the outside: its ports.

``CertificateBook`` (the event store's Certificate and AcmeAccount aggregates, and the
Service a certificate belongs to), ``RateGuard`` (the Let's Encrypt rate-limit model, kept
exact across processes) and ``KeySealer`` (private keys sealed under the secret key; the
domain only ever holds the sealed text). All synchronous, like the store behind them: the SSL
desk calls them through ``asyncio.to_thread``. Real implementations live in ops/adapters
(``StoreCertificateBook``, ``StoreRateLedger``, ``private_key_sealer``); fakes satisfy the
same Protocols.

The node side and the checks, asynchronous: ``Installer`` (puts a certificate on a web or
mail domain with Hestia's commands: ``handlers/ssl_install.py`` ``CertificateInstaller``),
``Challenges`` (HTTP-01 files and DNS-01 TXT records on our nodes:
``handlers/ssl_challenges.py`` ``ChallengeSpots``), ``NodeDrivers`` (a node's driver by
server id), ``PreflightChecks`` (``handlers/ssl_preflight.py`` ``Preflight``) and ``AcmeCa``
(what the desk asks of a CA: ``handlers/acme_client.py`` ``AcmeClient``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from domain.acme_account import AcmeAccount
from domain.certificate import Certificate
from domain.service import Service
from domain.ssl_types import (
    Admission,
    CertificateFacts,
    DnsTarget,
    Http01Spot,
    InstallTarget,
    OrderIntent,
    PemBundle,
    PreflightVerdict,
)
from handlers.acme_values import (
    Authorization,
    Challenge,
    DirectoryInfo,
    OrderState,
    RenewalWindow,
)
from handlers.step import NodeDriver, StepLog

CertificateDecision = Callable[[Certificate | None], Certificate | None]
AccountDecision = Callable[[AcmeAccount | None], AcmeAccount | None]


class CertificateBook(Protocol):
    def certificate(self, cert_id: uuid.UUID) -> Certificate | None: ...

    def update(
        self, cert_id: uuid.UUID, decide: CertificateDecision, busy: str
    ) -> Certificate | None:
        """Loads the certificate (None: not seeded yet), lets ``decide`` record events on it
        (or create it) and saves what it returns; ``decide`` returning None records nothing.
        Decides again on fresh state when another writer was first; Conflict(``busy``) when
        it kept changing. Returns what ``decide`` returned, as saved."""

    def service(self, service_id: str) -> Service | None:
        """The service a certificate belongs to (suspended, terminated?)."""

    def account(self, directory_url: str) -> AcmeAccount | None: ...

    def update_account(self, directory_url: str, decide: AccountDecision) -> AcmeAccount:
        """As ``update``, for the ACME account of a directory: two processes creating it at
        once end with one account (the loser decides again, on the winner's)."""


class RateGuard(Protocol):
    def admit(self, intent: OrderIntent, account: str, now: datetime) -> Admission:
        """Spends the order's tokens from every bucket it counts against, all or nothing;
        refused (nothing spent) with the reason and the time it would be allowed."""

    def authorization_failed(self, name: str, account: str, now: datetime) -> None:
        """Counts a failed authorization of ``name``."""

    def rate_limited(
        self, intent: OrderIntent, account: str, until: datetime, now: datetime
    ) -> None:
        """The CA refused the order (429) until ``until``: its per-domain and same-names
        buckets hold no token before then."""


class KeySealer(Protocol):
    def seal(self, secret: str) -> str: ...

    def unseal(self, sealed: str) -> str: ...


class InstallOutcome(enum.Enum):
    """What an install did: only ``INSTALLED`` is true (it changed the node), and only
    ``INSTALLED`` and ``ALREADY`` mean the node holds the certificate now."""

    INSTALLED = "installed"
    ALREADY = "already"  # the node serves that serial already: nothing run
    SKIPPED = "skipped"  # the domain is suspended on the node: nothing put there

    def __bool__(self) -> bool:
        return self is InstallOutcome.INSTALLED

    @property
    def on_node(self) -> bool:
        return self is not InstallOutcome.SKIPPED


class Installer(Protocol):
    async def installed(self, driver: NodeDriver, target: InstallTarget) -> CertificateFacts | None:
        """What the node serves for the target now (None: no certificate there)."""

    async def install(
        self,
        driver: NodeDriver,
        target: InstallTarget,
        bundle: PemBundle,
        key_pem: str,
        log: StepLog,
    ) -> InstallOutcome:
        """Puts the certificate on the target (one install per node at a time); ``ALREADY``
        when the node serves that serial already, ``SKIPPED`` when the domain is suspended
        there. Raises NodeError when the node refuses."""


class Challenges(Protocol):
    async def put_http01(
        self, driver: NodeDriver, spot: Http01Spot, token: str, body: str
    ) -> None: ...

    async def remove_http01(self, driver: NodeDriver, spot: Http01Spot, token: str) -> None: ...

    async def add_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> None:
        """Adds the TXT value once (probes first: ``v-add-dns-record`` adds duplicates)."""

    async def remove_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> None:
        """Removes that exact value only."""


class NodeDrivers(Protocol):
    async def driver(self, server_id: str) -> NodeDriver:
        """The driver of a registered node (LookupError: no such node)."""


PlaceToken = Callable[[str, str], Awaitable[None]]
RemoveToken = Callable[[str], Awaitable[None]]


class PreflightChecks(Protocol):
    async def dns(
        self,
        names: Sequence[str],
        addresses: Iterable[str],
        *,
        wildcard: bool = False,
        dns01_possible: bool = True,
    ) -> PreflightVerdict:
        """``dns01_possible``: whether the certificate has a zone to prove DNS-01 in (the
        method decided here, CAA's ``validationmethods`` included, is the order's)."""

    async def tls(
        self,
        names: Sequence[str],
        address: str,
        now: datetime,
        renew_from: Callable[[CertificateFacts], datetime],
    ) -> CertificateFacts | None: ...

    async def http01(
        self, name: str, address: str, place: PlaceToken, remove: RemoveToken
    ) -> str | None: ...

    async def txt_visible(self, fqdn: str, value: str, servers: Iterable[str]) -> bool: ...


class AcmeCa(Protocol):
    """One registered ACME account at one CA (``AcmeClient`` after ``register``)."""

    directory_url: str
    account_url: str | None

    async def directory(self) -> DirectoryInfo: ...

    async def new_order(
        self, names: Sequence[str], *, replaces: str | None = None, profile: str | None = None
    ) -> OrderState: ...

    async def order(self, url: str) -> OrderState: ...

    async def authorization(self, url: str) -> Authorization: ...

    def key_authorization(self, token: str) -> str: ...

    def dns01_txt(self, token: str) -> str: ...

    async def answer(self, challenge_url: str) -> Challenge: ...

    async def wait_authorization(self, url: str, *, timeout_s: float = 60.0) -> Authorization: ...

    async def wait_order(self, url: str, *, timeout_s: float = 60.0) -> OrderState: ...

    async def finalize(self, order: OrderState, csr_der: bytes) -> OrderState: ...

    async def download(self, url: str) -> str: ...

    async def renewal_info(self, ari_id: str) -> RenewalWindow | None: ...


class AcmeSource(Protocol):
    async def client(self) -> AcmeCa:
        """The fleet's registered account at the configured CA (``SslAccount``)."""


class CertificateListing(Protocol):
    def custom_expiring(self, before: datetime) -> list[uuid.UUID]:
        """The custom certificates (not retired) whose ``not_after`` is before ``before``."""

    def shared_sites(self) -> list[uuid.UUID]:
        """The vanity sites' certificates (mode ``shared``, not retired): those the
        wildcard is installed on."""
