"""The SSL desk: looks at one certificate and does what it needs, recording each step.

``SslDesk.check(cert_id)`` consumes a Certificate (through the ``CertificateBook``) and the
Service it belongs to, and runs the automatic-SSL flow inside a fence of its own (a held
fence means another process is on that certificate: this check is skipped):

- skipped: retired; frozen (the certificate of ours we hold is still put back where the
  node lacks it: no CA is asked); not due yet; the service suspended or terminating (a
  ``Checked`` puts the next look off, so the tick does not pick it again at once). A terminated
  service's certificate is ``Retired``. A custom or shared certificate is never ordered: a
  custom one is installed if the node lacks it, then looked at again in a day; a shared one
  (a vanity site) is served the provider's wildcard (handlers/ssl_shared.py);
- pre-flight (DNS, CAA, then the TLS probe, then the HTTP-01 self-check): a failure records
  ``PreflightFailed`` with a readable reason and costs the CA nothing; a valid certificate
  the node already serves is ``Adopted``, with no order, unless we hold one of our own
  (that one is renewed, in its ARI window when the CA gave one);
- an open order is resumed, never ordered again; otherwise ``Issuance`` (handlers/ssl_issue.py)
  admits, orders, proves (HTTP-01, or DNS-01 where every authoritative server is ours, and
  always for a wildcard), finalizes and records ``Issued`` with the renewal moment
  (``RenewalScheduled``: inside the CA's ARI window, sent with ``replaces`` when renewing,
  else the ⅓-lifetime fallback);
- the certificate is put on the node (unless a custom certificate came while the CA worked:
  ``superseded``, the customer's is installed at the next look, at once), then ``Issued``
  and ``Installed`` are recorded in one save (a check killed before it leaves the order
  open: the next check resumes it, gets the same certificate and finds it on the node); an
  install that fails records ``Issued`` and the reason, and is tried again at the recheck
  interval. The wildcard has no node of its own: once issued or renewed it is installed on
  every vanity site served it (``WildcardInstalled`` on each site's certificate);
- an issued certificate not due for renewal has its ARI window asked again when its poll
  time has come, else a ``Checked``.

``warn_expiring(now)`` records ``ExpiryWarned`` once per threshold (30/14/7/1 days) for the
custom certificates near their end (Let's Encrypt mails no one; custom ones are not ours to
renew).

Consumes the ports of handlers/ssl_ports.py, the cadence (runtime settings) and a clock;
emits Certificate events and the outcome of each check as a word (``issued``, ``adopted``,
``preflight_failed``, …) for the caller's log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from domain.certificate import Certificate
from domain.errors import Conflict
from domain.ssl_policy import (
    EXPIRY_THRESHOLDS_DAYS,
    AriWindow,
    expiry_threshold_due,
    renewal_at,
)
from domain.ssl_types import PemBundle, SslCadence
from handlers.ssl_issue import Decide, Issuance, IssueParts, ari_window
from handlers.ssl_ports import (
    AcmeCa,
    AcmeSource,
    CertificateBook,
    CertificateListing,
    Installer,
)
from handlers.ssl_shared import SharedSites
from handlers.step import StepLog
from handlers.step_fence import StepFences

log = logging.getLogger(__name__)

SKIPPED_SERVICES = {"suspended": "suspended", "terminating": "terminating"}


def _installed(
    cert: Certificate, now: datetime, serial: str, reason: str | None, cadence: SslCadence
) -> None:
    """Records the install of ``serial`` on the certificate's node, or (``reason``) why it
    is not there: looked at again at the recheck interval."""
    target = cert.install_target
    if target is None:
        return
    if reason is None:
        cert.mark_installed(now, target.server_id, serial)
    else:
        cert.preflight_failed(now, "install", reason, cadence)


def certificate_fence_key(cert_id: uuid.UUID) -> int:
    """The fence of one certificate's checks: a signed 64-bit key, the same in every process."""
    digest = hashlib.blake2b(f"ssl-certificate/{cert_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SslDesk:
    """Checks certificates (see the module docstring)."""

    def __init__(
        self,
        book: CertificateBook,
        parts: IssueParts,
        acme: AcmeSource,
        installer: Installer,
        fences: StepFences,
        cadence: Callable[[], SslCadence],
        clock: Callable[[], datetime],
        *,
        listing: CertificateListing | None = None,
    ) -> None:
        self._book = book
        self._parts = parts
        self._acme = acme
        self._installer = installer
        self._fences = fences
        self._cadence = cadence
        self._clock = clock
        self._listing = listing
        self._shared = SharedSites(
            book,
            parts.sealer,
            fences,
            certificate_fence_key,
            listing,
            clock,
            record=self._record,
            put=self._put,
            skip=self._service_skip,
        )

    async def check(self, cert_id: uuid.UUID) -> str:
        """One look at the certificate; what came of it."""
        key = certificate_fence_key(cert_id)
        if not await self._fences.try_take(key):
            return "busy"
        try:
            outcome = await self._check(cert_id)
        except Exception as exc:  # a node or the store away: the next check picks it up
            log.warning("ssl %s: the check stopped: %s", cert_id, type(exc).__name__)
            outcome = await self._stopped(cert_id, exc)
        finally:
            await self._fences.release(key)
        log.info("ssl %s: %s", cert_id, outcome)
        return outcome

    async def _check(self, cert_id: uuid.UUID) -> str:
        now, cadence = self._clock(), self._cadence()
        cert = await asyncio.to_thread(self._book.certificate, cert_id)
        if cert is None:
            return "unknown"
        if cert.retired:
            return "retired"
        skipped = await self._service_skip(cert, now)
        if skipped == "retired":
            return skipped
        if cert.mode == "auto" and cert.frozen(now):
            return await self._frozen(cert, skipped, now, cadence)
        if not cert.due(now):
            return "not_due"
        if skipped is not None:  # looked at again later, not at every tick meanwhile
            await self._record(cert.id, lambda c: c.check(now, skipped, cadence))
            return skipped
        if cert.mode == "shared":  # a vanity site: served the provider's wildcard
            return await self._shared.serve(cert, now, cadence)
        if cert.mode != "auto":  # custom: the customer's
            reason = await self._keep_installed(cert, now, cadence)
            if reason is None:
                await self._record(cert.id, lambda c: c.check(now, cert.mode, cadence))
            return cert.mode
        if cert.order is None and not cert.renewal_due(now):
            return await self._look(cert, now, cadence)
        return await self._issue(cert, now, cadence)

    async def _frozen(
        self, cert: Certificate, skipped: str | None, now: datetime, cadence: SslCadence
    ) -> str:
        """No order till the freeze ends, but the certificate of ours we hold is put back
        where the node lacks it (a redeploy re-created the domain without SSL): that needs
        no CA. A look asked meanwhile (a redeploy) is put off to the freeze's end."""
        if skipped is None and await self._keep_installed(cert, now, cadence) is not None:
            return "frozen"  # why it is not on the node is recorded: tried again then
        if cert.due(now):
            await self._record(cert.id, lambda c: c.check(now, skipped or "frozen", cadence))
        return "frozen"

    async def _service_skip(self, cert: Certificate, now: datetime) -> str | None:
        if cert.service_id is None:
            return None
        service = await asyncio.to_thread(self._book.service, cert.service_id)
        if service is None:
            return "no_service"
        if service.status == "terminated":
            await self._record(cert.id, lambda c: c.retire(now))
            return "retired"
        return SKIPPED_SERVICES.get(service.status)

    # --- an issued certificate ----------------------------------------------------------

    async def _look(self, cert: Certificate, now: datetime, cadence: SslCadence) -> str:
        if await self._keep_installed(cert, now, cadence) is not None:
            return "install_failed"
        facts, held = cert.current_facts, cert.ari
        polled = cert.ari_poll_at is not None and cert.ari_poll_at <= now
        if polled and facts is not None:  # a window held, or one not got yet: asked again
            ari, explained, poll_at = await ari_window(await self._client(), facts, now)
            if ari is None and held is not None:  # not answered: the window held, asked again
                ari = AriWindow(held["start"], held["end"])
                explained = held["explanation_url"]
                poll_at = now + timedelta(seconds=cadence.recheck_interval_s)
            await self._record(
                cert.id,
                lambda c: c.schedule_renewal(
                    now, cadence, ari, explanation_url=explained, poll_at=poll_at
                ),
            )
            return "rescheduled"
        await self._record(cert.id, lambda c: c.check(now, "valid", cadence))
        return "valid"

    async def _keep_installed(
        self, cert: Certificate, now: datetime, cadence: SslCadence
    ) -> str | None:
        """Installs the current certificate where the node lacks it (one we hold a key for);
        the reason when that failed (recorded), else None."""
        current, target = cert.current, cert.install_target
        if current is None or target is None or not current.get("certificate"):
            return None
        serial = current["facts"]["serial"]
        if cert.installed.get(target.server_id) == serial or not current.get("key_sealed"):
            return None
        bundle = PemBundle(current["certificate"], current["chain"] or "")
        key_pem = self._parts.sealer.unseal(current["key_sealed"])
        return await self._install(cert, bundle, serial, key_pem, now, cadence)

    async def _install(
        self,
        cert: Certificate,
        bundle: PemBundle,
        serial: str,
        key_pem: str,
        now: datetime,
        cadence: SslCadence,
    ) -> str | None:
        return await self._put(
            cert, bundle, key_pem, now, cadence, lambda c: _installed(c, now, serial, None, cadence)
        )

    async def _put(
        self,
        cert: Certificate,
        bundle: PemBundle,
        key_pem: str,
        now: datetime,
        cadence: SslCadence,
        mark: Decide,
    ) -> str | None:
        """Installs ``bundle`` on the certificate's target and records ``mark`` once the node
        holds it; else records the reason, and returns it."""
        if cert.install_target is None:
            return None
        reason = await self._put_on_node(cert, bundle, key_pem)
        if reason is None:
            await self._record(cert.id, mark)
        else:
            await self._record(
                cert.id, lambda c: c.preflight_failed(now, "install", reason, cadence)
            )
        return reason

    async def _put_on_node(self, cert: Certificate, bundle: PemBundle, key_pem: str) -> str | None:
        """Puts the certificate on its node (the installer probes first: a node serving it
        already runs nothing); None when the node holds it now, else why not (nothing
        recorded: the caller records it)."""
        target = cert.install_target
        if target is None:
            return None
        try:
            driver = await self._parts.drivers.driver(target.server_id)
            done = await self._installer.install(driver, target, bundle, key_pem, StepLog())
        except Exception as exc:  # the node refused or is away: try again later
            return f"installing on {target.server_id} failed: {exc}"
        if not done.on_node:
            return f"not installed on {target.server_id}: the domain is suspended there"
        return None

    # --- getting one --------------------------------------------------------------------

    async def _issue(self, cert: Certificate, now: datetime, cadence: SslCadence) -> str:
        preflight = self._parts.preflight
        wildcard = cert.role == "wildcard" or any(n.startswith("*.") for n in cert.names)
        # the pre-flight decides the method (CAA's validationmethods) as the order will
        verdict = await preflight.dns(
            cert.names,
            cert.expected_addresses,
            wildcard=wildcard,
            dns01_possible=wildcard or bool(cert.dns_targets),
        )
        if not verdict.ok:
            check, reason = verdict.check or "dns", verdict.reason or "the DNS check failed"
            await self._record(cert.id, lambda c: c.preflight_failed(now, check, reason, cadence))
            return "preflight_failed"
        address = next(iter(cert.expected_addresses), None)
        # Only a certificate with none of ours yet adopts: ours, served and "valid" by the
        # probe's ⅓-lifetime measure, is being renewed (an ARI window may open earlier), and
        # adopting it would drop that window, the PEM and the sealed key.
        ours = bool((cert.current or {}).get("certificate"))
        adoptable = cert.adopt_served and not ours and not wildcard
        if cert.order is None and adoptable and address is not None:
            key = str(cert.id)
            served = await preflight.tls(
                cert.names, address, now, lambda f: renewal_at(f, key, None, f.not_before)
            )
            if served is not None:
                await self._record(cert.id, lambda c: c.adopt(now, served, cadence))
                return "adopted"
        dns01 = wildcard or (verdict.dns01 and bool(cert.dns_targets))
        if not dns01:
            unserved = await self._http01_self_check(cert, address)
            if unserved is not None:
                await self._record(
                    cert.id, lambda c: c.preflight_failed(now, "http01", unserved, cadence)
                )
                return "preflight_failed"
        acme = await self._client()
        issuance = Issuance(
            self._parts,
            acme,
            cert,
            lambda decide: self._record(cert.id, decide),
            cadence,
            now,
            dns01=dns01,
            authorities=verdict.authorities,
            clock=self._clock,
        )
        if cert.order is not None:
            got = await issuance.resume()
        else:
            got = await issuance.order(await self._replaces(acme, cert, now))
        if isinstance(got, str):
            return got
        ari, explained, poll_at = await ari_window(acme, got.facts, now)
        if not await self._still_ordering(cert.id, got.order_url):
            # a custom certificate came while the CA worked (or the order was dropped): the
            # one issued is not put on the node in its stead; the next look installs that one
            return "superseded"
        # On the node first, then Issued and Installed in one save: a check killed between
        # the two leaves the order open (resumed: the CA hands the same certificate again,
        # found on the node already), never an issued certificate that no look installs.
        not_installed = await self._put_on_node(cert, got.bundle, got.key_pem)

        def issued(c: Certificate) -> None:
            c.issued(
                now,
                certificate=got.bundle.certificate,
                chain=got.bundle.chain,
                facts=got.facts,
                cadence=cadence,
                ari=ari,
                explanation_url=explained,
                poll_at=poll_at,
            )
            _installed(c, now, got.facts.serial, not_installed, cadence)

        try:
            await self._record(cert.id, issued)
        except Conflict:  # a custom certificate came just now: ours is on the node instead
            if not_installed is None:
                await self._superseded_on_node(cert, got.facts.serial, now)
            return "superseded"
        if cert.role == "wildcard":  # on every vanity site, renewed once for all
            await self._shared.deliver(cert.id, cadence)
            return "issued"
        return "issued" if not_installed is None else "issued_not_installed"

    async def _still_ordering(self, cert_id: uuid.UUID, order_url: str) -> bool:
        """Whether the certificate still wants what ``order_url`` issued: automatic, with
        that order open (a custom certificate uploaded meanwhile has closed it)."""
        fresh = await asyncio.to_thread(self._book.certificate, cert_id)
        if fresh is None or fresh.retired or fresh.mode != "auto" or fresh.order is None:
            return False
        return bool(fresh.order["url"] == order_url)

    async def _superseded_on_node(self, cert: Certificate, serial: str, now: datetime) -> None:
        """Records that the node serves ``serial`` (ours, put there as the customer's came),
        so the next look, due at once since the upload, finds it is not the customer's and
        installs that one."""
        target = cert.install_target
        if target is None:
            return

        def on_node(c: Certificate) -> None:
            if not c.retired:
                c.mark_installed(now, target.server_id, serial)

        await self._record(cert.id, on_node)

    async def _http01_self_check(self, cert: Certificate, address: str | None) -> str | None:
        spot = cert.http01_spot
        if spot is None or address is None:
            return (
                "no way to prove the names: their DNS is not served by our DNS nodes "
                "(DNS-01) and no web root is known to serve HTTP-01 from"
            )
        driver = await self._parts.drivers.driver(spot.server_id)
        challenges = self._parts.challenges
        for name in cert.names:
            reason = await self._parts.preflight.http01(
                name,
                address,
                lambda token, body: challenges.put_http01(driver, spot, token, body),
                lambda token: challenges.remove_http01(driver, spot, token),
            )
            if reason is not None:
                return reason
        return None

    async def _replaces(self, acme: AcmeCa, cert: Certificate, now: datetime) -> str | None:
        """The ARI id of the certificate an order renews, when the CA has ARI, that
        certificate is ours (one it issued to this account: an adopted one is not) and its
        renewal window has opened: Let's Encrypt exempts from its limits only renewals inside
        the window, so an order before it (one asked for) spends as a new one."""
        facts = cert.current_facts
        if facts is None or facts.ari_id is None or cert.ari is None:
            return None
        if now < cert.ari["start"]:
            return None
        if not (cert.current or {}).get("certificate"):
            return None
        return facts.ari_id if (await acme.directory()).renewal_info else None

    # --- expiry warnings ----------------------------------------------------------------

    async def warn_expiring(self, now: datetime) -> list[tuple[uuid.UUID, int]]:
        """Records the expiry warning each custom certificate is owed now, once per
        threshold; the (certificate, days) warned."""
        if self._listing is None:
            return []
        horizon = now + timedelta(days=max(EXPIRY_THRESHOLDS_DAYS))
        warned: list[tuple[uuid.UUID, int]] = []
        for cert_id in await asyncio.to_thread(self._listing.custom_expiring, horizon):
            owed: list[int] = []

            def decide(cert: Certificate, owed: list[int] = owed) -> None:
                owed.clear()
                facts = cert.current_facts
                if cert.mode != "custom" or facts is None:
                    return
                days = expiry_threshold_due(facts.not_after, cert.warned, now)
                if days is not None and cert.warn_expiry(now, days):
                    owed.append(days)

            await self._record(cert_id, decide)
            warned += [(cert_id, days) for days in owed]
        return warned

    # --- plumbing -----------------------------------------------------------------------

    async def _stopped(self, cert_id: uuid.UUID, exc: Exception) -> str:
        """Records why a check stopped half-way (an open order stays open: the next check
        resumes it). The exception's text names a node or a CA, never a key."""
        now, cadence = self._clock(), self._cadence()
        reason = f"the check stopped: {exc}" if str(exc) else type(exc).__name__
        try:
            await self._record(cert_id, lambda c: c.check(now, "error", cadence, reason))
        except Exception:
            log.warning("ssl %s: could not record why the check stopped", cert_id, exc_info=True)
        return "error"

    async def _client(self) -> AcmeCa:
        return await self._acme.client()

    async def _record(self, cert_id: uuid.UUID, decide: Decide) -> Certificate | None:
        """Loads the certificate afresh, lets ``decide`` record on it, saves (again on a
        conflict)."""

        def on_fresh(cert: Certificate | None) -> Certificate | None:
            if cert is None:
                return None
            decide(cert)
            return cert

        busy = f"certificate {cert_id} kept changing"
        return await asyncio.to_thread(self._book.update, cert_id, on_fresh, busy)
