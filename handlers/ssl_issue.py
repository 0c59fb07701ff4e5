"""One certificate order, from admission to ``Issued``: the CA-facing half of the SSL desk.

``Issuance`` consumes a Certificate that needs a certificate and whose pre-flight passed (or
one with an open order, to resume), the ACME account, the rate guard, the challenge spots on
our nodes and the key sealer; it records, in this order and each before the next step:

1. an ACME profile set (HOSTWRIGHT_ACME_PROFILE) that the CA's directory does not offer →
   ``Checked`` with the reason (no order, nothing spent: the CA would refuse every one);
   a refusal by the rate-limit model → ``Frozen`` (kind ``rate_limited``) until it allows;
2. the order → ``OrderPlaced`` with the order's new private key sealed, *before* any
   challenge is answered, so a check that dies after it resumes that order (``resume``) and
   never places a second one;
3. a CA refusal → ``IssueFailed``: a 429 ``rateLimited`` at any step (the order, an
   authorization, finalize) with its ``Retry-After`` counted from when the answer came (the
   clock read then; one hour when the CA gave none): the name frozen until then, and the
   guard told, a failed authorization (the guard counts it), or
   anything else (N in a row freeze the name: ``Certificate.issue_failed``). An ARI renewal
   sent with ``replaces`` and refused ``alreadyReplaced`` or ``malformed`` is ordered once
   more without it, admitted by the guard like any new order;
4. the certificate → ``Issued`` and ``RenewalScheduled`` (inside the CA's ARI window when it
   has one, else at ⅓ of the lifetime left: ``domain.ssl_policy.renewal_at``).

A CA that cannot be reached records ``Checked`` and leaves an open order open. Challenge files
and TXT records are removed whatever happens. The clear private key exists only in memory
here and in the install; it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from domain.certificate import FROZEN_BY_RATE_LIMIT, Certificate
from domain.rate_limits import PublicSuffixRules, registered_domain
from domain.ssl_policy import AriWindow
from domain.ssl_types import CertificateFacts, OrderIntent, PemBundle, SslCadence
from handlers import x509_tools
from handlers.acme_values import AcmeProblem, AcmeUnavailable, Authorization, OrderState
from handlers.ssl_ports import (
    AcmeCa,
    Challenges,
    KeySealer,
    NodeDrivers,
    PreflightChecks,
    RateGuard,
)
from handlers.step import StepLog

log = logging.getLogger(__name__)

Decide = Callable[[Certificate], object]  # what it returns is not used
Record = Callable[[Decide], Awaitable[Certificate | None]]
Cleanup = Callable[[], Awaitable[None]]
ARI_POLL_S = 6 * 3600  # an ARI window asked again this often when the CA says no Retry-After
NO_RETRY_AFTER_S = 3600  # a 429 without Retry-After: waited out as Let's Encrypt's hour
OPEN_ORDER = ("pending", "ready", "processing")
TXT_POLL_S = 1.0


@dataclass(frozen=True)
class Issued:
    """What ``Issuance`` got: the certificate, its chain and facts, the clear key, and the
    order it came from."""

    bundle: PemBundle
    facts: CertificateFacts
    key_pem: str
    order_url: str


@dataclass(frozen=True)
class IssueParts:
    guard: RateGuard
    preflight: PreflightChecks
    challenges: Challenges
    drivers: NodeDrivers
    sealer: KeySealer
    suffixes: PublicSuffixRules
    key_kind: x509_tools.KeyKind = "ec-p256"
    profile: str | None = None
    wait_s: float = 60.0  # how long an authorization or an order may take at the CA
    txt_wait_s: float = 30.0  # how long a DNS-01 TXT may take to reach every server


class Issuance:
    """One run of the order for one certificate (see the module docstring)."""

    def __init__(
        self,
        parts: IssueParts,
        acme: AcmeCa,
        cert: Certificate,
        record: Record,
        cadence: SslCadence,
        now: datetime,
        *,
        dns01: bool,
        authorities: Sequence[str],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._parts = parts
        self._acme = acme
        self._cert = cert
        self._record = record
        self._cadence = cadence
        self._now = now
        self._dns01 = dns01
        self._authorities = tuple(authorities)
        self._account = acme.account_url or acme.directory_url
        # what the certificate is ordered for: the open order's names when resuming
        self._names = list(cert.order["names"] if cert.order else cert.names)
        self._clock = clock or (lambda: now)  # read when a CA answer needs its own time
        replaces = cert.order.get("replaces") if cert.order else None
        self._intent = OrderIntent(tuple(self._names), self._registered(self._names), replaces)
        self._log = StepLog()  # node commands' lines; never holds a key

    async def order(self, replaces: str | None) -> Issued | str:
        """Admission, a new order, then on to the certificate; else the outcome's name."""
        placed = await self._place(replaces)
        if isinstance(placed, str):
            return placed
        order, key_pem = placed
        return await self._finish(order, key_pem)

    async def resume(self) -> Issued | str:
        """Continues the certificate's open order with the key recorded for it."""
        held = self._cert.order
        assert held is not None
        key_pem = self._parts.sealer.unseal(held["key_sealed"])
        try:
            order = await self._acme.order(held["url"])
        except AcmeProblem as problem:
            return await self._failed(problem, f"the open order could not be resumed: {problem}")
        except AcmeUnavailable as exc:
            return await self._unavailable(exc)
        return await self._finish(order, key_pem)

    # --- placing ------------------------------------------------------------------------

    async def _place(self, replaces: str | None) -> tuple[OrderState, str] | str:
        names = self._names
        intent = self._intent = OrderIntent(tuple(names), self._registered(names), replaces)
        try:
            unoffered = await self._unoffered_profile()
        except AcmeUnavailable as exc:
            return await self._unavailable(exc)
        if unoffered is not None:  # every order would be refused: none placed, none spent
            await self._record(lambda c: c.check(self._now, "refused", self._cadence, unoffered))
            return "refused"
        guard = self._parts.guard
        admission = await asyncio.to_thread(guard.admit, intent, self._account, self._now)
        if not admission.allowed:
            reason = admission.reason or "the rate-limit model refuses this order now"
            if admission.retry_at is None:
                await self._record(lambda c: c.check(self._now, "refused", self._cadence, reason))
            else:
                until = admission.retry_at
                await self._record(
                    lambda c: c.freeze(self._now, until, reason, FROZEN_BY_RATE_LIMIT)
                )
            return "refused"
        key_pem = x509_tools.new_key(self._parts.key_kind)
        try:
            order = await self._acme.new_order(
                names, replaces=replaces, profile=self._parts.profile
            )
        except AcmeProblem as problem:
            if replaces is not None and (problem.already_replaced or problem.malformed):
                log.info(
                    "ssl %s: replaces refused (%s); ordering without it", self._cert.id, problem
                )
                return await self._place(None)
            return await self._failed(problem, f"the CA refused the order: {problem}")
        except AcmeUnavailable as exc:
            return await self._unavailable(exc)
        key_sealed = self._parts.sealer.seal(key_pem)
        await self._record(
            lambda c: c.place_order(
                self._now,
                order_url=order.url,
                names=names,
                key_sealed=key_sealed,
                replaces=replaces,
            )
        )
        return order, key_pem

    async def _unoffered_profile(self) -> str | None:
        """Why the configured ACME profile cannot be ordered (the CA's directory does not
        offer it), else None: a typo in HOSTWRIGHT_ACME_PROFILE would have every order
        refused ``invalidProfile``, each after a rate-ledger token was spent."""
        profile = self._parts.profile
        if not profile:
            return None
        offered = (await self._acme.directory()).profiles
        if profile in offered:
            return None
        shown = ", ".join(sorted(offered)) or "none"
        return f"the CA offers no ACME profile {profile!r} (offers: {shown})"

    def _registered(self, names: Sequence[str]) -> tuple[str, ...]:
        found = (registered_domain(name, self._parts.suffixes) for name in names)
        return tuple(sorted({domain for domain in found if domain}))

    # --- proving and finishing ----------------------------------------------------------

    async def _finish(self, order: OrderState, key_pem: str) -> Issued | str:
        try:
            if order.status == "pending":
                unproven = await self._prove(order)
                if unproven is not None:
                    return unproven
            state = order
            if state.status in OPEN_ORDER:
                state = await self._acme.wait_order(order.url, timeout_s=self._parts.wait_s)
            if state.status == "ready":
                csr = x509_tools.csr_der(key_pem, self._names)
                await self._acme.finalize(state, csr)
                state = await self._acme.wait_order(order.url, timeout_s=self._parts.wait_s)
            if state.status != "valid" or not state.certificate:
                why = str(state.error) if state.error else f"the order ended {state.status}"
                return await self._failed(state.error, f"the CA did not issue: {why}")
            fullchain = await self._acme.download(state.certificate)
        except AcmeProblem as problem:
            return await self._failed(problem, f"the CA refused: {problem}")
        except AcmeUnavailable as exc:
            return await self._unavailable(exc)
        bundle = x509_tools.split_fullchain(fullchain)
        return Issued(bundle, x509_tools.facts(bundle.certificate), key_pem, order.url)

    async def _prove(self, order: OrderState) -> str | None:
        """Answers every pending authorization; None when all are valid, else the outcome."""
        cleanups: list[Cleanup] = []
        try:
            for url in order.authorizations:
                authorization = await self._acme.authorization(url)
                if authorization.status == "valid":
                    continue
                outcome = await self._answer(authorization, cleanups)
                if outcome is not None:
                    return outcome
            return None
        finally:
            for cleanup in cleanups:
                try:
                    await cleanup()
                except Exception as exc:  # a leftover challenge harms nothing; say so
                    log.warning("ssl %s: a challenge was not removed: %s", self._cert.id, exc)

    async def _answer(self, authorization: Authorization, cleanups: list[Cleanup]) -> str | None:
        dns01 = self._dns01 or authorization.wildcard
        kind = "dns-01" if dns01 else "http-01"
        challenge = authorization.challenge(kind)
        if challenge is None:
            reason = f"the CA offers no {kind} challenge for {authorization.name}"
            return await self._failed(None, reason)
        if dns01:
            placed = await self._put_txt(authorization.name, challenge.token, cleanups)
            if placed is not None:
                return placed
        else:
            await self._put_file(challenge.token, cleanups)
        await self._acme.answer(challenge.url)
        done = await self._acme.wait_authorization(authorization.url, timeout_s=self._parts.wait_s)
        if done.status == "valid":
            return None
        name = authorization.name
        await asyncio.to_thread(
            self._parts.guard.authorization_failed, name, self._account, self._now
        )
        why = str(done.error) if done.error else f"the authorization is {done.status}"
        return await self._failed(done.error, f"{name} was not validated: {why}", [name])

    async def _put_file(self, token: str, cleanups: list[Cleanup]) -> None:
        spot = self._cert.http01_spot
        if spot is None:
            raise LookupError(f"certificate {self._cert.id} has no HTTP-01 spot")
        driver = await self._parts.drivers.driver(spot.server_id)
        body = self._acme.key_authorization(token)
        await self._parts.challenges.put_http01(driver, spot, token, body)
        cleanups.append(partial(self._parts.challenges.remove_http01, driver, spot, token))

    async def _put_txt(self, name: str, token: str, cleanups: list[Cleanup]) -> str | None:
        fqdn, value = f"_acme-challenge.{name}", self._acme.dns01_txt(token)
        for target in self._cert.dns01_targets:
            driver = await self._parts.drivers.driver(target.server_id)
            await self._parts.challenges.add_txt(driver, target, fqdn, value, self._log)
            remove = self._parts.challenges.remove_txt
            cleanups.append(partial(remove, driver, target, fqdn, value, self._log))
        waited = 0.0
        while not await self._parts.preflight.txt_visible(fqdn, value, self._authorities):
            if waited >= self._parts.txt_wait_s:
                # not answered: the order stays open and the next check tries again
                await self._record(partial(self._txt_not_visible, fqdn))
                return "waiting"
            await asyncio.sleep(TXT_POLL_S)
            waited += TXT_POLL_S
        return None

    # --- recording failures -------------------------------------------------------------

    def _txt_not_visible(self, fqdn: str, cert: Certificate) -> None:
        reason = f"the DNS-01 TXT record {fqdn} is not served by every DNS server yet"
        cert.check(self._now, "waiting", self._cadence, reason)

    async def _failed(
        self, problem: AcmeProblem | None, reason: str, authz_failed: list[str] | None = None
    ) -> str:
        retry_after = None
        if problem is not None and problem.rate_limited:
            # every 429, wherever it came: frozen and the guard told, from when it came
            answered = self._clock()
            wait = problem.retry_after if problem.retry_after is not None else NO_RETRY_AFTER_S
            retry_after = answered + timedelta(seconds=wait)
            guard = self._parts.guard
            await asyncio.to_thread(
                guard.rate_limited, self._intent, self._account, retry_after, answered
            )
        await self._record(
            lambda c: c.issue_failed(
                self._now,
                reason=reason,
                cadence=self._cadence,
                problem=None if problem is None else problem.type,
                retry_after=retry_after,
                authz_failed=authz_failed,
            )
        )
        return "rate_limited" if retry_after is not None else "failed"

    async def _unavailable(self, exc: AcmeUnavailable) -> str:
        reason = f"the CA cannot be reached: {exc}"
        await self._record(lambda c: c.check(self._now, "ca_unavailable", self._cadence, reason))
        return "ca_unavailable"


async def ari_window(
    acme: AcmeCa, facts: CertificateFacts, now: datetime
) -> tuple[AriWindow | None, str | None, datetime | None]:
    """The CA's renewal window for a certificate, its explanation URL and when to ask again
    (its Retry-After, else ``ARI_POLL_S``); (None, None, None) when the CA has no ARI, and
    (None, None, when to ask again) when it could not be asked now: a window missed once is
    asked for again, never given up."""
    if facts.ari_id is None:
        return None, None, None
    try:
        if (await acme.directory()).renewal_info is None:
            return None, None, None
        window = await acme.renewal_info(facts.ari_id)
    except (AcmeProblem, AcmeUnavailable) as exc:
        log.info("ssl: no ARI window for %s now: %s", facts.serial, exc)
        return None, None, now + timedelta(seconds=ARI_POLL_S)
    if window is None:
        return None, None, now + timedelta(seconds=ARI_POLL_S)
    wait = ARI_POLL_S if window.retry_after_s is None else window.retry_after_s
    return (
        AriWindow(window.start, window.end),
        window.explanation_url,
        now + timedelta(seconds=wait),
    )
