"""The vanity sites' share of the provider's wildcard certificate (``*.<provider domain>``).

A vanity site's web certificate (mode ``shared``) is never ordered: the one wildcard is, by
the SSL desk, and installed on every vanity site. ``SharedSites`` consumes the sites and the
wildcard (through the ``CertificateBook``), the vanity sites the SSL view lists
(``CertificateListing.shared_sites``) and the desk's own install and record steps; it emits
per site ``Certificate.WildcardInstalled`` (the wildcard's public facts: the site shows
``issued`` with them) or the reason an install failed (``PreflightFailed``, check
``install``), or a ``Checked``:

- ``serve(site, now, cadence)``, a site's own check (the desk holds its fence): the wildcard
  not issued yet → ``Checked``, still wanted (the site stays ``pending``); the site's node
  not recorded holding the wildcard's serial, or someone asked again (a redeploy, a repair)
  → installed and ``WildcardInstalled``; else the node is asked whether it still serves it
  (the installer's probe: nothing run when it does; put back when it lost it) and
  ``Checked``;
- ``deliver(wildcard_id, cadence)``, right after the wildcard is issued or renewed:
  every site served it that lacks it gets it, under the site's own fence (waited for, so a
  check of that site running elsewhere ends first and this one then finds it served), one
  install at a time per node and the nodes in parallel. A site whose service is suspended
  or terminating is left alone (its own check installs it once it is back); a terminated
  one's certificate is retired instead.

The installer probes the node first (``ALREADY``: nothing run), so a redelivered event or a
resumed check never installs twice on a site that serves the wildcard. A site missed here
(its row not in the view yet, a process killed half-way) is served by its own next check.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from domain.certificate import Certificate
from domain.ssl_types import CertificateFacts, PemBundle, SslCadence
from handlers.ssl_issue import Decide
from handlers.ssl_ports import CertificateBook, CertificateListing, KeySealer
from handlers.step_fence import StepFences, fenced

log = logging.getLogger(__name__)

Record = Callable[[uuid.UUID, Decide], Awaitable[Certificate | None]]
Put = Callable[[Certificate, PemBundle, str, datetime, SslCadence, Decide], Awaitable[str | None]]
Skip = Callable[[Certificate, datetime], Awaitable[str | None]]


@dataclass(frozen=True)
class _Wildcard:
    """An issued wildcard: what is installed (the key still sealed)."""

    id: uuid.UUID
    facts: CertificateFacts
    bundle: PemBundle
    key_sealed: str


def _issued(wildcard: Certificate | None) -> _Wildcard | None:
    if wildcard is None or wildcard.retired or wildcard.current is None:
        return None
    current, facts = wildcard.current, wildcard.current_facts
    if facts is None or not current.get("certificate") or not current.get("key_sealed"):
        return None
    bundle = PemBundle(current["certificate"], current["chain"] or "")
    return _Wildcard(wildcard.id, facts, bundle, current["key_sealed"])


class SharedSites:
    """See the module docstring. ``record``, ``put`` and ``skip`` are the desk's: record a
    decision on a certificate afresh; install a bundle on a certificate's target and record
    the mark (or the failure); the reason a certificate's service is not looked at now."""

    def __init__(
        self,
        book: CertificateBook,
        sealer: KeySealer,
        fences: StepFences,
        fence_key: Callable[[uuid.UUID], int],
        listing: CertificateListing | None,
        clock: Callable[[], datetime],
        *,
        record: Record,
        put: Put,
        skip: Skip,
        poll_s: float = 0.2,
    ) -> None:
        self._book = book
        self._sealer = sealer
        self._fences = fences
        self._fence_key = fence_key
        self._listing = listing
        self._clock = clock
        self._record = record
        self._put = put
        self._skip = skip
        self._poll_s = poll_s

    async def serve(self, site: Certificate, now: datetime, cadence: SslCadence) -> str:
        """A vanity site's own check: what came of it."""
        wildcard = await self._wildcard(site.wildcard_id)
        if wildcard is None:
            await self._record(site.id, lambda c: c.check(now, "waiting", cadence, waiting=True))
            return "waiting"
        if not site.wants_wildcard(wildcard.facts):  # recorded there: the node is asked
            key_pem = self._sealer.unseal(wildcard.key_sealed)
            reason = await self._put(
                site,
                wildcard.bundle,
                key_pem,
                now,
                cadence,
                lambda c: c.check(now, "shared", cadence),
            )
            return "shared" if reason is None else "install_failed"
        return await self._install(site, wildcard, now, cadence)

    async def deliver(self, wildcard_id: uuid.UUID, cadence: SslCadence) -> int:
        """The wildcard on every vanity site served it that lacks it; how many got it. Each
        site's install is recorded at its own time (a fleet's takes a while)."""
        wildcard = await self._wildcard(wildcard_id)
        if wildcard is None or self._listing is None:
            return 0
        by_node: dict[str, list[uuid.UUID]] = {}
        for site_id in await asyncio.to_thread(self._listing.shared_sites):
            site = await asyncio.to_thread(self._book.certificate, site_id)
            target = None if site is None else site.install_target
            if site is None or target is None or site.wildcard_id != wildcard.id:
                continue
            if site.wants_wildcard(wildcard.facts):
                by_node.setdefault(target.server_id, []).append(site.id)
        served = await asyncio.gather(
            *(self._deliver_on(ids, wildcard, cadence) for ids in by_node.values())
        )
        return sum(served)

    async def _deliver_on(
        self, site_ids: list[uuid.UUID], wildcard: _Wildcard, cadence: SslCadence
    ) -> int:
        served = 0
        for site_id in site_ids:  # one node's sites, one after the other
            try:
                served += await self._deliver_to(site_id, wildcard, cadence)
            except Exception as exc:  # the store away: the site's own check serves it
                log.warning("ssl %s: the wildcard not delivered: %s", site_id, exc)
        return served

    async def _deliver_to(
        self, site_id: uuid.UUID, wildcard: _Wildcard, cadence: SslCadence
    ) -> bool:
        async with fenced(self._fences, self._fence_key(site_id), poll_s=self._poll_s):
            now = self._clock()
            site = await asyncio.to_thread(self._book.certificate, site_id)  # afresh
            if site is None or not site.wants_wildcard(wildcard.facts):
                return False  # served meanwhile, or retired
            if await self._skip(site, now) is not None:  # suspended, terminating, retired
                return False
            return await self._install(site, wildcard, now, cadence) == "installed"

    async def _install(
        self, site: Certificate, wildcard: _Wildcard, now: datetime, cadence: SslCadence
    ) -> str:
        target = site.install_target
        if target is None:
            return "no_target"
        server_id, facts = target.server_id, wildcard.facts

        def mark(cert: Certificate) -> None:
            cert.wildcard_installed(
                now, server_id=server_id, wildcard_id=wildcard.id, facts=facts, cadence=cadence
            )

        key_pem = self._sealer.unseal(wildcard.key_sealed)
        reason = await self._put(site, wildcard.bundle, key_pem, now, cadence, mark)
        return "installed" if reason is None else "install_failed"

    async def _wildcard(self, wildcard_id: uuid.UUID | None) -> _Wildcard | None:
        if wildcard_id is None:
            return None
        return _issued(await asyncio.to_thread(self._book.certificate, wildcard_id))
