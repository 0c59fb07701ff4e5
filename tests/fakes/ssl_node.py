"""The node-side SSL ports (handlers/ssl_ports.py) and the pre-flight, in memory, for tests of
the SSL desk while the real installer and challenge spots (package D) are built elsewhere.

Consumes what the desk hands them; emits what a test counts: ``FakeInstaller.installs`` (the
target and serial of each install, never the key), ``FakeChallenges.files`` (token → key
authorization; also served over HTTP when a test gives it an ``Http01Files``) and ``txt``,
``FakePreflight`` verdicts the test sets. ``fail_next`` on the installer makes the next
install raise, and ``fail_put`` on the challenges the put of that number (1: the next), as
a node that went away would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from domain.ssl_types import (
    CertificateFacts,
    DnsTarget,
    Http01Spot,
    InstallTarget,
    PemBundle,
    PreflightVerdict,
)
from handlers import x509_tools
from handlers.ssl_ports import (
    Challenges,
    Installer,
    InstallOutcome,
    NodeDrivers,
    PlaceToken,
    PreflightChecks,
    RemoveToken,
)
from handlers.step import NodeDriver, StepLog


class FakeDriver:
    """Stands for a node's driver: the fakes only look at its ``server_id``."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id


class FakeDrivers:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def driver(self, server_id: str) -> NodeDriver:
        self.asked.append(server_id)
        return FakeDriver(server_id)  # type: ignore[return-value]


class FakeInstaller:
    def __init__(self) -> None:
        self.installs: list[tuple[InstallTarget, str]] = []
        self.served: dict[InstallTarget, str] = {}  # target → serial
        self.fail_next = 0
        self.suspended: set[InstallTarget] = set()  # the node skips these: nothing put there

    async def installed(self, driver: NodeDriver, target: InstallTarget) -> CertificateFacts | None:
        return None

    async def install(
        self,
        driver: NodeDriver,
        target: InstallTarget,
        bundle: PemBundle,
        key_pem: str,
        log: StepLog,
    ) -> InstallOutcome:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError(f"{target.server_id} is not answering")
        assert x509_tools.key_matches(bundle.certificate, key_pem)
        serial = x509_tools.facts(bundle.certificate).serial
        if target in self.suspended:
            return InstallOutcome.SKIPPED
        if self.served.get(target) == serial:
            return InstallOutcome.ALREADY
        self.served[target] = serial
        self.installs.append((target, serial))
        return InstallOutcome.INSTALLED


class FakeChallenges:
    def __init__(self, files: dict[str, str] | None = None) -> None:
        self.files: dict[str, str] = {} if files is None else files
        self.txt: dict[str, list[str]] = {}
        self.placed = 0
        self.fail_put: int | None = None

    async def put_http01(self, driver: NodeDriver, spot: Http01Spot, token: str, body: str) -> None:
        self.placed += 1
        if self.fail_put is not None:
            self.fail_put -= 1
            if self.fail_put == 0:
                raise ConnectionError(f"{spot.server_id} went away")
        self.files[token] = body

    async def remove_http01(self, driver: NodeDriver, spot: Http01Spot, token: str) -> None:
        self.files.pop(token, None)

    async def add_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> None:
        self.placed += 1
        self.txt.setdefault(fqdn, []).append(value)

    async def remove_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> None:
        values = self.txt.get(fqdn, [])
        if value in values:
            values.remove(value)


class FakePreflight:
    """Every check passes unless the test says otherwise: ``verdict`` for DNS, ``served``
    for the TLS probe, ``http01_reason`` for the self-check."""

    def __init__(self, *, dns01: bool = False) -> None:
        self.verdict = PreflightVerdict(True, dns01=dns01, authorities=("127.0.0.1",))
        self.served: CertificateFacts | None = None
        self.http01_reason: str | None = None
        self.calls: list[str] = []
        self.dns01_possible: list[bool] = []  # what each DNS check was told

    async def dns(
        self,
        names: Sequence[str],
        addresses: Iterable[str],
        *,
        wildcard: bool = False,
        dns01_possible: bool = True,
    ) -> PreflightVerdict:
        self.calls.append("dns")
        self.dns01_possible.append(dns01_possible)
        return self.verdict

    async def tls(
        self,
        names: Sequence[str],
        address: str,
        now: datetime,
        renew_from: Callable[[CertificateFacts], datetime],
    ) -> CertificateFacts | None:
        self.calls.append("tls")
        if self.served is None or now >= renew_from(self.served):
            return None
        return self.served

    async def http01(
        self, name: str, address: str, place: PlaceToken, remove: RemoveToken
    ) -> str | None:
        self.calls.append("http01")
        await place("self-check-token", "self-check-body")
        await remove("self-check-token")
        return self.http01_reason

    async def txt_visible(self, fqdn: str, value: str, servers: Iterable[str]) -> bool:
        return True


_installer: Installer = FakeInstaller()
_challenges: Challenges = FakeChallenges()
_drivers: NodeDrivers = FakeDrivers()
_preflight: PreflightChecks = FakePreflight()
