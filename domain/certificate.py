"""The Certificate aggregate: the TLS certificate of one service's role (``web``, ``mail``),
or the one wildcard the vanity services share, and everything done to get and keep it.

pending → checking (an order is open) → issued → renewing (an order is open) → issued …
any → frozen until T (failures in a row, or the CA's rate limit) → back where it was at T
mode auto → custom (a customer's own certificate: never ordered, never renewed) → auto
mode shared (a vanity site): pending → issued when the provider's wildcard is installed on it
(``WildcardInstalled``, again at each renewal of the wildcard); never ordered itself
any → retired (the service is terminated: final)

Consumes decisions the SSL desk takes with the time passed in (``now``) and the cadence from
the runtime settings; emits past-tense events. Every time it will next be looked at
(``next_check_at``) and its renewal moment are *recorded* in the events, never derived later
from settings that may have changed, so the SSL view is a pure fold. Private keys are only
ever held sealed (``key_sealed``: the order's key, recorded before any challenge is answered
so a resumed order reuses it; the current certificate's; a custom one's); the clear key never
reaches the domain. Certificates and their facts are public and are recorded as JSON values.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import Conflict, InvalidInput
from domain.ssl_policy import AriWindow, after_failure, covers, next_check, renewal_at
from domain.ssl_types import (
    CertificateFacts,
    DnsTarget,
    Http01Spot,
    InstallTarget,
    SslCadence,
)

CERTIFICATE_NAMESPACE = uuid.UUID("3c1f5a7e-8b2d-4f60-9e14-7a5d2c8b0f39")
ROLES = ("web", "mail")
MODES = ("auto", "custom", "shared")
FROZEN_BY_FAILURES = "failures"
FROZEN_BY_RATE_LIMIT = "rate_limited"
DEPLOY_ACTOR = "deploy"  # the deploy chain's ssl step (a first deploy, a redeploy, a repair)


def certificate_uuid(service_id: str, role: str) -> uuid.UUID:
    """Stable per (service, role): seeding twice finds the same certificate."""
    return uuid.uuid5(CERTIFICATE_NAMESPACE, f"certificate/{service_id}/{role}")


def wildcard_uuid(provider_domain: str) -> uuid.UUID:
    """The one wildcard certificate of the provider's domain, shared by the vanity services."""
    return uuid.uuid5(CERTIFICATE_NAMESPACE, f"wildcard/{provider_domain.lower()}")


def facts_json(facts: CertificateFacts) -> dict[str, Any]:
    """The facts as a JSON value (times as ISO text), as events record them."""
    data = asdict(facts)
    data["not_before"] = facts.not_before.isoformat()
    data["not_after"] = facts.not_after.isoformat()
    data["names"] = list(facts.names)
    return data


def facts_from_json(data: dict[str, Any]) -> CertificateFacts:
    return CertificateFacts(
        serial=data["serial"],
        not_before=datetime.fromisoformat(data["not_before"]),
        not_after=datetime.fromisoformat(data["not_after"]),
        names=tuple(data["names"]),
        common_name=data["common_name"],
        issuer=data["issuer"],
        ari_id=data["ari_id"],
        fingerprint=data["fingerprint"],
    )


class Certificate(Aggregate):
    class Seeded(Aggregate.Created):
        service_id: str | None  # None for the shared wildcard
        role: str  # web, mail, wildcard
        mode: str  # auto, or shared: a vanity site served the wildcard, never ordered itself
        names: list[str]
        install: dict[str, Any] | None  # an InstallTarget as JSON
        dns_targets: list[dict[str, Any]]  # DnsTargets where a DNS-01 TXT can be put
        http01: dict[str, Any] | None  # an Http01Spot as JSON
        expected_addresses: list[str]  # what A/AAAA must answer
        fast_attempts: int
        actor: str

    def __init__(
        self,
        service_id: str | None,
        role: str,
        mode: str,
        names: list[str],
        install: dict[str, Any] | None,
        dns_targets: list[dict[str, Any]],
        http01: dict[str, Any] | None,
        expected_addresses: list[str],
        fast_attempts: int,
        actor: str,
    ) -> None:
        self.service_id = service_id
        self.role = role
        self.mode = mode
        self.names = list(names)
        self.install = install
        self.dns_targets = list(dns_targets)
        self.http01 = http01
        self.expected_addresses = list(expected_addresses)
        self.state = "pending"
        self.fast_left = fast_attempts
        self.failures = 0  # failed issues in a row
        self.frozen_until: datetime | None = None
        self.frozen_reason: str | None = None
        self.frozen_kind: str | None = None
        self.last_error: str | None = None
        self.last_check: str | None = None  # the pre-flight check that failed last, if any
        self.order: dict[str, Any] | None = None  # url, names, key_sealed, replaces, placed_at
        self.current: dict[str, Any] | None = None  # facts, certificate, chain, key_sealed
        self.installed: dict[str, str] = {}  # server id → serial on that node
        self.renew_at: datetime | None = None
        self.ari: dict[str, Any] | None = None  # start, end, explanation_url
        self.ari_poll_at: datetime | None = None
        self.next_check_at: datetime | None = None  # None: due now
        self.issue_requested = False  # someone asked for one now, whatever is served
        self.adopt_served = True  # a valid certificate already served may be taken as ours
        self.warned: list[int] = []  # expiry thresholds warned for the current not_after

    class Event(Aggregate.Event):
        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Certificate)
            self.apply_to(aggregate)

        def apply_to(self, cert: Certificate) -> None:
            pass

    class IssueRequested(Event):
        """Someone asked for a certificate now (``POST …/ssl/{role}/issue``, a redeploy, a
        custom certificate removed): fast mode again, a failure freeze lifted, the served
        certificate adopted only when ``adopt``. Asked by a deploy (``DEPLOY_ACTOR``: a
        redeploy, a verify & repair) while a certificate of ours is current (``reinstall``,
        decided when asked), it is that one that is wanted, on its node: looked at now and
        installed again where the node lacks it (even while frozen: that needs no CA),
        renewed only at its renewal moment; the failures and a freeze are left as they are,
        so a redeploy never orders a failing renewal again before its freeze ends."""

        actor: str
        fast_attempts: int
        adopt: bool
        reinstall: bool = False  # absent from events recorded before it was: False

        def apply_to(self, cert: Certificate) -> None:
            cert.next_check_at = self.timestamp
            if self.reinstall:
                cert.installed = {}  # not taken on trust: the look asks the node again
                return
            cert.failures = 0
            if cert.frozen_kind == FROZEN_BY_FAILURES:
                _thaw(cert)
            cert.fast_left = self.fast_attempts
            cert.issue_requested = True
            cert.adopt_served = self.adopt

    class Checked(Event):
        """A look that changed nothing on the node or at the CA (still valid, not due, an
        order still pending at the CA); when to look next."""

        outcome: str
        reason: str | None
        next_check_at: datetime

        def apply_to(self, cert: Certificate) -> None:
            cert.fast_left = max(0, cert.fast_left - 1)
            cert.next_check_at = self.next_check_at
            _thaw_if_over(cert, self.timestamp)

    class PreflightFailed(Event):
        """A check before any CA request failed (DNS, CAA, HTTP-01): a reason, no order.
        It costs the CA nothing, so it does not count towards the freeze."""

        check: str
        reason: str
        next_check_at: datetime

        def apply_to(self, cert: Certificate) -> None:
            cert.fast_left = max(0, cert.fast_left - 1)
            cert.last_error = self.reason
            cert.last_check = self.check
            cert.next_check_at = self.next_check_at
            _thaw_if_over(cert, self.timestamp)
            if cert.current is None:
                cert.state = "failed"

    class Adopted(Event):
        """A valid certificate the node already serves for every name: taken as current,
        without an order (its key is the node's; we hold none)."""

        facts: dict[str, Any]

        def apply_to(self, cert: Certificate) -> None:
            cert.current = {"facts": self.facts, "certificate": None, "chain": None}
            cert.current["key_sealed"] = None
            _settled(cert)

    class OrderPlaced(Event):
        """An order is open at the CA, with the key its certificate will have (sealed),
        recorded before any challenge is answered: a resumed check continues it."""

        order_url: str
        names: list[str]
        key_sealed: str
        replaces: str | None

        def apply_to(self, cert: Certificate) -> None:
            cert.order = {
                "url": self.order_url,
                "names": list(self.names),
                "key_sealed": self.key_sealed,
                "replaces": self.replaces,
                "placed_at": self.timestamp,
            }
            _thaw_if_over(cert, self.timestamp)
            cert.state = "renewing" if cert.current is not None else "checking"

    class OrderAbandoned(Event):
        """The open order is given up (expired at the CA, names changed)."""

        reason: str

        def apply_to(self, cert: Certificate) -> None:
            cert.order = None
            cert.state = _resting_state(cert)

    class Issued(Event):
        """The CA issued the open order's certificate: it is current, with the order's key."""

        certificate: str
        chain: str
        facts: dict[str, Any]

        def apply_to(self, cert: Certificate) -> None:
            key_sealed = cert.order["key_sealed"] if cert.order else None
            cert.current = {
                "facts": self.facts,
                "certificate": self.certificate,
                "chain": self.chain,
                "key_sealed": key_sealed,
            }
            cert.order = None
            _settled(cert)

    class Installed(Event):
        server_id: str
        serial: str

        def apply_to(self, cert: Certificate) -> None:
            cert.installed = {**cert.installed, self.server_id: self.serial}

    class WildcardInstalled(Event):
        """The provider's wildcard certificate (``wildcard_id``) is on this vanity site's node
        now: its public facts are the site's current ones (the PEM and the key stay the
        wildcard's own); looked at again at ``next_check_at``."""

        server_id: str
        wildcard_id: str
        facts: dict[str, Any]
        next_check_at: datetime

        def apply_to(self, cert: Certificate) -> None:
            cert.current = {"facts": self.facts, "certificate": None, "chain": None}
            cert.current["key_sealed"] = None
            cert.installed = {**cert.installed, self.server_id: self.facts["serial"]}
            _settled(cert)
            cert.next_check_at = self.next_check_at

    class IssueFailed(Event):
        """An order failed (or could not be placed): the open order, if any, is over.
        ``problem`` is the CA's problem type, ``retry_after`` its Retry-After, and
        ``authz_failed`` the names whose authorization failed."""

        reason: str
        problem: str | None
        retry_after: datetime | None
        authz_failed: list[str]
        next_check_at: datetime

        def apply_to(self, cert: Certificate) -> None:
            cert.order = None
            cert.failures += 1
            cert.fast_left = max(0, cert.fast_left - 1)
            cert.last_error = self.reason
            cert.last_check = None
            cert.next_check_at = self.next_check_at
            cert.state = "renewing" if cert.current is not None else "failed"

    class Frozen(Event):
        """Not tried until ``until``: ``kind`` says why (failures in a row, or the CA's or
        our model's rate limit)."""

        until: datetime
        reason: str
        kind: str

        def apply_to(self, cert: Certificate) -> None:
            cert.frozen_until = self.until
            cert.frozen_reason = self.reason
            cert.frozen_kind = self.kind
            cert.state = "frozen"
            cert.next_check_at = self.until

    class RenewalScheduled(Event):
        """When the current certificate is renewed: ``source`` is ``ari`` (inside the CA's
        window) or ``lifetime`` (⅓ of it left); the ARI window and its explanation when
        given, and when to ask the CA for the window again."""

        at: datetime
        source: str
        window_start: datetime | None
        window_end: datetime | None
        explanation_url: str | None
        poll_at: datetime | None
        next_check_at: datetime

        def apply_to(self, cert: Certificate) -> None:
            cert.renew_at = self.at
            cert.ari = (
                None
                if self.window_start is None
                else {
                    "start": self.window_start,
                    "end": self.window_end,
                    "explanation_url": self.explanation_url,
                }
            )
            cert.ari_poll_at = self.poll_at
            cert.next_check_at = self.next_check_at

    class CustomUploaded(Event):
        """The customer's own certificate: installed instead of ours, never renewed by us."""

        certificate: str
        chain: str
        key_sealed: str
        facts: dict[str, Any]
        actor: str

        def apply_to(self, cert: Certificate) -> None:
            cert.mode = "custom"
            cert.current = {
                "facts": self.facts,
                "certificate": self.certificate,
                "chain": self.chain,
                "key_sealed": self.key_sealed,
            }
            cert.order = None
            _settled(cert)
            cert.renew_at = None
            cert.ari = None
            cert.ari_poll_at = None
            cert.next_check_at = self.timestamp  # installed, then looked at daily

    class CustomRemoved(Event):
        """The role is handed back to automatic SSL, which issues one at once."""

        actor: str
        fast_attempts: int

        def apply_to(self, cert: Certificate) -> None:
            cert.mode = "auto"
            cert.current = None
            cert.state = "pending"
            cert.fast_left = self.fast_attempts
            cert.issue_requested = True
            cert.adopt_served = False  # the node still serves the customer's certificate
            cert.warned = []
            cert.next_check_at = self.timestamp

    class ExpiryWarned(Event):
        threshold_days: int
        not_after: datetime

        def apply_to(self, cert: Certificate) -> None:
            cert.warned = sorted({*cert.warned, self.threshold_days}, reverse=True)

    class Retired(Event):
        """The service is terminated: no more orders, checks or installs."""

        def apply_to(self, cert: Certificate) -> None:
            cert.state = "retired"
            cert.order = None
            cert.next_check_at = None

    class KeyResealed(Event):
        """A private key sealed afresh under the current secret key (``hostwright
        rotate-key``): ``slot`` is ``order`` or ``current``. The clear key is never here."""

        slot: str
        key_sealed: str
        key_id: str

        def apply_to(self, cert: Certificate) -> None:
            held = cert.order if self.slot == "order" else cert.current
            if held is not None:
                held["key_sealed"] = self.key_sealed

    # --- creating ---------------------------------------------------------------------------

    @classmethod
    def seed(
        cls,
        *,
        service_id: str | None,
        role: str,
        names: list[str],
        install: InstallTarget | None,
        dns_targets: list[DnsTarget],
        http01: Http01Spot | None,
        expected_addresses: list[str],
        cadence: SslCadence,
        now: datetime,
        actor: str,
        shared: bool = False,
        provider_domain: str | None = None,
    ) -> Certificate:
        """A certificate to get, due at once in fast mode. ``shared``: a vanity site, served
        the wildcard of ``provider_domain`` (seeded with ``role`` ``wildcard``)."""
        if role == "wildcard":
            if not provider_domain:
                raise InvalidInput("the wildcard certificate needs the provider's domain")
            cert_id = wildcard_uuid(provider_domain)
        elif role in ROLES and service_id:
            cert_id = certificate_uuid(service_id, role)
        else:
            raise InvalidInput(f"no certificate role {role!r} for service {service_id!r}")
        if not names:
            raise InvalidInput("a certificate needs at least one name")
        return cls._create(
            cls.Seeded,
            id=cert_id,
            timestamp=now,
            service_id=service_id,
            role=role,
            mode="shared" if shared else "auto",
            names=list(names),
            install=None if install is None else asdict(install),
            dns_targets=[asdict(target) for target in dns_targets],
            http01=None if http01 is None else asdict(http01),
            expected_addresses=list(expected_addresses),
            fast_attempts=cadence.fast_attempts,
            actor=actor,
        )

    # --- queries ----------------------------------------------------------------------------

    @property
    def retired(self) -> bool:
        return self.state == "retired"

    @property
    def install_target(self) -> InstallTarget | None:
        return None if self.install is None else InstallTarget(**self.install)

    @property
    def dns01_targets(self) -> tuple[DnsTarget, ...]:
        return tuple(DnsTarget(**target) for target in self.dns_targets)

    @property
    def http01_spot(self) -> Http01Spot | None:
        return None if self.http01 is None else Http01Spot(**self.http01)

    @property
    def current_facts(self) -> CertificateFacts | None:
        return None if self.current is None else facts_from_json(self.current["facts"])

    @property
    def wildcard_id(self) -> uuid.UUID | None:
        """The wildcard a vanity site (mode ``shared``) is served: that of its name's parent
        (a vanity site is ``<label>.<provider domain>``); None for any other certificate."""
        if self.mode != "shared" or not self.names:
            return None
        return wildcard_uuid(self.names[0].partition(".")[2])

    def wants_wildcard(self, facts: CertificateFacts) -> bool:
        """Whether this vanity site should have the wildcard of ``facts`` installed: it is not
        recorded on its node yet, or someone asked for it again (a redeploy, a repair)."""
        target = self.install_target
        if self.mode != "shared" or self.retired or target is None:
            return False
        return self.issue_requested or self.installed.get(target.server_id) != facts.serial

    def frozen(self, now: datetime) -> bool:
        return self.frozen_until is not None and now < self.frozen_until

    def due(self, now: datetime) -> bool:
        """Whether it should be looked at now."""
        if self.retired:
            return False
        return self.next_check_at is None or self.next_check_at <= now

    def renewal_due(self, now: datetime) -> bool:
        """Whether a new certificate is wanted: none yet, its renewal moment has come, or one
        was asked for. A custom or shared certificate is never ordered."""
        if self.mode != "auto" or self.retired:
            return False
        if self.current is None or self.issue_requested:
            return True
        return self.renew_at is not None and self.renew_at <= now

    # --- decisions --------------------------------------------------------------------------

    def request_issue(
        self, now: datetime, actor: str, cadence: SslCadence, *, adopt: bool = True
    ) -> None:
        self._refuse_when_retired("issue")
        if self.mode == "custom":
            raise Conflict(
                f"{self._what} has a custom certificate; remove it (DELETE …/ssl/{self.role}"
                "/custom) to hand it back to automatic SSL"
            )
        self.trigger_event(
            Certificate.IssueRequested,
            timestamp=now,
            actor=actor,
            fast_attempts=cadence.fast_attempts,
            adopt=adopt,
            reinstall=actor == DEPLOY_ACTOR and _holds_ours(self),
        )

    def check(
        self,
        now: datetime,
        outcome: str,
        cadence: SslCadence,
        reason: str | None = None,
        *,
        waiting: bool = False,
    ) -> None:
        """A look that changed nothing; records when to look next (``waiting``: a certificate
        is still wanted, as a vanity site waiting for the wildcard), never before a freeze
        ends (a look asked while frozen, by a redeploy, is done then)."""
        self._refuse_when_retired("check")
        next_check_at = self._next_check(now, cadence, fast_spent=True, waiting=waiting)
        if self.frozen_until is not None and self.frozen(now):
            next_check_at = max(next_check_at, self.frozen_until)
        self.trigger_event(
            Certificate.Checked,
            timestamp=now,
            outcome=outcome,
            reason=reason,
            next_check_at=next_check_at,
        )

    def preflight_failed(self, now: datetime, check: str, reason: str, cadence: SslCadence) -> None:
        self._refuse_when_retired("check")
        self.trigger_event(
            Certificate.PreflightFailed,
            timestamp=now,
            check=check,
            reason=reason,
            next_check_at=self._next_check(now, cadence, fast_spent=True, waiting=True),
        )

    def adopt(self, now: datetime, facts: CertificateFacts, cadence: SslCadence) -> None:
        """Takes a certificate the node already serves (the TLS probe found it valid)."""
        self._refuse_when_retired("adopt a certificate for")
        if self.mode != "auto":
            raise Conflict(f"{self._what} is {self.mode}: nothing is adopted for it")
        if not self.adopt_served:
            raise Conflict(f"{self._what} must get a new certificate, not the one served")
        if self.order is not None:
            raise Conflict(f"{self._what} has an open order; finish or abandon it first")
        self.trigger_event(Certificate.Adopted, timestamp=now, facts=facts_json(facts))
        self._schedule(now, cadence, None, None, None)

    def place_order(
        self,
        now: datetime,
        *,
        order_url: str,
        names: list[str],
        key_sealed: str,
        replaces: str | None = None,
    ) -> None:
        """Records the open order with its sealed key, before any challenge is answered."""
        self._refuse_when_retired("order a certificate for")
        if self.mode != "auto":
            raise Conflict(f"{self._what} is {self.mode}: it is never ordered")
        if self.order is not None:
            raise Conflict(f"{self._what} has an open order already ({self.order['url']})")
        if self.frozen_until is not None and now < self.frozen_until:
            until = self.frozen_until.astimezone(UTC)
            raise Conflict(
                f"{self._what} is frozen until {until:%Y-%m-%d %H:%M} UTC: {self.frozen_reason}"
            )
        if not key_sealed:
            raise InvalidInput("an order needs its sealed private key")
        self.trigger_event(
            Certificate.OrderPlaced,
            timestamp=now,
            order_url=order_url,
            names=list(names),
            key_sealed=key_sealed,
            replaces=replaces,
        )

    def abandon_order(self, now: datetime, reason: str) -> bool:
        if self.order is None:
            return False
        self.trigger_event(Certificate.OrderAbandoned, timestamp=now, reason=reason)
        return True

    def issued(
        self,
        now: datetime,
        *,
        certificate: str,
        chain: str,
        facts: CertificateFacts,
        cadence: SslCadence,
        ari: AriWindow | None = None,
        explanation_url: str | None = None,
        poll_at: datetime | None = None,
    ) -> None:
        """The open order's certificate, then its renewal moment."""
        self._refuse_when_retired("record a certificate for")
        if self.order is None:
            raise Conflict(f"{self._what} has no open order to take a certificate from")
        self.trigger_event(
            Certificate.Issued,
            timestamp=now,
            certificate=certificate,
            chain=chain,
            facts=facts_json(facts),
        )
        self._schedule(now, cadence, ari, explanation_url, poll_at)

    def mark_installed(self, now: datetime, server_id: str, serial: str) -> bool:
        """False (nothing recorded) when that serial is recorded on that node already."""
        self._refuse_when_retired("install on")
        if self.installed.get(server_id) == serial:
            return False
        self.trigger_event(Certificate.Installed, timestamp=now, server_id=server_id, serial=serial)
        return True

    def wildcard_installed(
        self,
        now: datetime,
        *,
        server_id: str,
        wildcard_id: uuid.UUID,
        facts: CertificateFacts,
        cadence: SslCadence,
    ) -> bool:
        """Records that the node of this vanity site serves the wildcard of ``facts``; False
        (nothing recorded) when that is recorded already and nothing was asked since."""
        self._refuse_when_retired("install on")
        if self.mode != "shared":
            raise Conflict(f"{self._what} is {self.mode}: it is not served the wildcard")
        if wildcard_id != self.wildcard_id:
            raise Conflict(f"{self._what} is not served the wildcard {wildcard_id}")
        uncovered = [name for name in self.names if not covers(facts.names, name)]
        if uncovered:
            raise Conflict(f"{', '.join(facts.names)} does not cover {', '.join(uncovered)}")
        if self.installed.get(server_id) == facts.serial and not self.issue_requested:
            return False
        self.trigger_event(
            Certificate.WildcardInstalled,
            timestamp=now,
            server_id=server_id,
            wildcard_id=str(wildcard_id),
            facts=facts_json(facts),
            # renewed by the wildcard's own check, which installs it here again: this look
            # asks the node whether it still serves it (the desk's install probes first)
            next_check_at=next_check(now, cadence, fast_left=0, issued=True),
        )
        return True

    def issue_failed(
        self,
        now: datetime,
        *,
        reason: str,
        cadence: SslCadence,
        problem: str | None = None,
        retry_after: datetime | None = None,
        authz_failed: list[str] | None = None,
    ) -> None:
        """An order failed: counts towards the freeze; a rate limit (``retry_after``) freezes
        until then, N failures in a row for the cadence's freeze."""
        self._refuse_when_retired("fail an order of")
        self.trigger_event(
            Certificate.IssueFailed,
            timestamp=now,
            reason=reason,
            problem=problem,
            retry_after=retry_after,
            authz_failed=list(authz_failed or ()),
            next_check_at=self._next_check(now, cadence, fast_spent=True, waiting=True),
        )
        if retry_after is not None and retry_after > now:
            self.freeze(now, retry_after, reason, kind=FROZEN_BY_RATE_LIMIT)
            return
        until = after_failure(self.failures, now, cadence)
        if until is not None:
            self.freeze(
                now, until, f"{self.failures} failures in a row; last: {reason}", FROZEN_BY_FAILURES
            )

    def freeze(self, now: datetime, until: datetime, reason: str, kind: str) -> None:
        """Not tried until ``until`` (a later freeze never shortens an earlier one)."""
        self._refuse_when_retired("freeze")
        if kind not in (FROZEN_BY_FAILURES, FROZEN_BY_RATE_LIMIT):
            raise InvalidInput(f"no freeze of kind {kind!r}")
        if self.frozen_until is not None and until <= self.frozen_until:
            return
        self.trigger_event(Certificate.Frozen, timestamp=now, until=until, reason=reason, kind=kind)

    def schedule_renewal(
        self,
        now: datetime,
        cadence: SslCadence,
        ari: AriWindow | None,
        *,
        explanation_url: str | None = None,
        poll_at: datetime | None = None,
    ) -> None:
        """The renewal moment again, from a new ARI window (or its disappearance)."""
        self._refuse_when_retired("renew")
        if self.current is None or self.mode != "auto":
            raise Conflict(f"{self._what} has no certificate of ours to renew")
        self._schedule(now, cadence, ari, explanation_url, poll_at)

    def upload_custom(
        self,
        now: datetime,
        *,
        certificate: str,
        chain: str,
        key_sealed: str,
        facts: CertificateFacts,
        actor: str,
    ) -> None:
        self._refuse_when_retired("upload a certificate for")
        if self.mode == "shared":
            raise Conflict(f"{self._what} is served the shared wildcard certificate")
        self.trigger_event(
            Certificate.CustomUploaded,
            timestamp=now,
            certificate=certificate,
            chain=chain,
            key_sealed=key_sealed,
            facts=facts_json(facts),
            actor=actor,
        )

    def remove_custom(self, now: datetime, actor: str, cadence: SslCadence) -> bool:
        """Hands the role back to automatic SSL; False when it has no custom certificate."""
        self._refuse_when_retired("remove the certificate of")
        if self.mode != "custom":
            return False
        self.trigger_event(
            Certificate.CustomRemoved,
            timestamp=now,
            actor=actor,
            fast_attempts=cadence.fast_attempts,
        )
        return True

    def warn_expiry(self, now: datetime, threshold_days: int) -> bool:
        """Records the warning once per threshold of the current certificate."""
        facts = self.current_facts
        if facts is None or self.retired or threshold_days in self.warned:
            return False
        self.trigger_event(
            Certificate.ExpiryWarned,
            timestamp=now,
            threshold_days=threshold_days,
            not_after=facts.not_after,
        )
        return True

    def retire(self, now: datetime) -> bool:
        if self.retired:
            return False
        self.trigger_event(Certificate.Retired, timestamp=now)
        return True

    def reseal_key(self, now: datetime, slot: str, key_sealed: str, key_id: str) -> bool:
        """Takes a key sealed afresh; False for a retired certificate, an empty slot or the
        same text."""
        held = self.order if slot == "order" else self.current if slot == "current" else None
        if self.retired or held is None or held.get("key_sealed") in (None, key_sealed):
            return False
        self.trigger_event(
            Certificate.KeyResealed, timestamp=now, slot=slot, key_sealed=key_sealed, key_id=key_id
        )
        return True

    # --- helpers ----------------------------------------------------------------------------

    @property
    def _what(self) -> str:
        if self.service_id is None:
            return f"the wildcard certificate {', '.join(self.names)}"
        return f"the {self.role} certificate of service {self.service_id}"

    def _refuse_when_retired(self, verb: str) -> None:
        if self.retired:
            raise Conflict(f"cannot {verb} {self._what}: it is retired (service terminated)")

    def _schedule(
        self,
        now: datetime,
        cadence: SslCadence,
        ari: AriWindow | None,
        explanation_url: str | None,
        poll_at: datetime | None,
    ) -> None:
        facts = self.current_facts
        assert facts is not None
        at = renewal_at(facts, str(self.id), ari, now)
        issued = at > now
        self.trigger_event(
            Certificate.RenewalScheduled,
            timestamp=now,
            at=at,
            source="lifetime" if ari is None else "ari",
            window_start=None if ari is None else ari.start,
            window_end=None if ari is None else ari.end,
            explanation_url=explanation_url,
            poll_at=poll_at,
            next_check_at=next_check(
                now, cadence, fast_left=0, issued=issued, renew_at=at, poll_at=poll_at
            ),
        )

    def _next_check(
        self, now: datetime, cadence: SslCadence, *, fast_spent: bool, waiting: bool = False
    ) -> datetime:
        """When to look next after a look now: fast mode while attempts are left (this look
        spends one when ``fast_spent``), else the recheck interval while a certificate is
        wanted (``waiting``, or none yet), else the renewal moment or the ARI poll."""
        fast_left = max(0, self.fast_left - 1) if fast_spent else self.fast_left
        wanted = waiting or self.renewal_due(now)
        return next_check(
            now,
            cadence,
            fast_left=fast_left,
            issued=not wanted,
            renew_at=self.renew_at,
            poll_at=self.ari_poll_at,
        )


def _holds_ours(cert: Certificate) -> bool:
    """A current certificate of ours: its PEM and its key (sealed) held, not one adopted."""
    current = cert.current or {}
    return bool(current.get("certificate") and current.get("key_sealed"))


def _settled(cert: Certificate) -> None:
    """A certificate is current now: nothing wanted, nothing failing."""
    cert.state = "issued"
    cert.failures = 0
    cert.fast_left = 0
    cert.issue_requested = False
    cert.adopt_served = True
    cert.last_error = None
    cert.last_check = None
    cert.warned = []
    _thaw(cert)


def _thaw(cert: Certificate) -> None:
    cert.frozen_until = None
    cert.frozen_reason = None
    cert.frozen_kind = None
    if cert.state == "frozen":
        cert.state = _resting_state(cert)


def _thaw_if_over(cert: Certificate, now: datetime) -> None:
    if cert.frozen_until is not None and now >= cert.frozen_until:
        _thaw(cert)


def _resting_state(cert: Certificate) -> str:
    if cert.current is not None:
        return "issued"
    return "failed" if cert.last_error else "pending"
