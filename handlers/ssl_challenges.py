"""Where ACME challenges are answered on our nodes: HTTP-01 files in a site's document root, and
DNS-01 TXT records in a zone on every DNS node that holds it.

``ChallengeSpots(*, upload_root)`` consumes a ``NodeDriver`` per node, an ``Http01Spot`` or a
``DnsTarget``, the challenge's token or name and value, and a ``StepLog``; it emits nothing but
the change on the node, and raises ``NodeError`` when the node refuses.

HTTP-01: our login may not write into a user's home, so the file goes up to
``<upload_root>/<random>/<token>`` (mode 0644: Hestia copies it as the user; the random
folder is made afresh for it, in an upload root that must be ours and writable by no one else,
so no planted folder or link can redirect the write), then ``v-add-fs-directory``
makes ``<docroot>/.well-known`` and its ``acme-challenge`` (one level at a time: Hestia resolves
the path first, and a path whose parent is missing does not resolve) and ``v-copy-fs-file``
puts it in place; the upload is removed whatever happened. Removal is ``v-delete-fs-file``,
which is fine with a file already gone.

DNS-01: ``v-add-dns-record`` adds a duplicate when the record is there, so the zone is listed
first and the record added only when missing (``dns_steps.converge_records``); removal deletes
exactly that name, type and value, never another TXT at the same name (a second challenge of
the same name, for a wildcard and its base, may be there too). Ownership is the caller's: the
targets are the zones the certificate's names live in.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from domain.ssl_types import DnsTarget, Http01Spot
from handlers.dns_records import DesiredRecord
from handlers.dns_steps import converge_records, delete_copies
from handlers.step import NodeDriver, StepLog, apply

UPLOAD_ROOT = "/tmp/hostwright-acme"  # noqa: S108 — Hestia's fs commands read only /tmp or home
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # base64url, as RFC 8555 makes tokens


class ChallengeSpots:
    """See the module docstring."""

    def __init__(self, *, upload_root: str = UPLOAD_ROOT) -> None:
        self._upload_root = upload_root

    async def put_http01(
        self, driver: NodeDriver, spot: Http01Spot, token: str, body: str, log: StepLog
    ) -> None:
        """``<docroot>/.well-known/acme-challenge/<token>`` holds ``body``."""
        folder = _challenge_folder(driver, spot)
        upload = await driver.put_fresh_file(
            self._upload_root, _token(token), body.encode(), mode=0o644
        )
        try:
            for made in (posixpath.dirname(folder), folder):
                await apply(driver, log, ["v-add-fs-directory", spot.user, made])
            await apply(driver, log, ["v-copy-fs-file", spot.user, upload, f"{folder}/{token}"])
        finally:
            await driver.remove_tree(posixpath.dirname(upload))

    async def remove_http01(
        self, driver: NodeDriver, spot: Http01Spot, token: str, log: StepLog
    ) -> None:
        """No challenge file ``token`` in the spot's document root (gone already is fine)."""
        path = f"{_challenge_folder(driver, spot)}/{_token(token)}"
        await apply(driver, log, ["v-delete-fs-file", spot.user, path])

    async def add_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> bool:
        """``fqdn TXT value`` present once in the target's zone; True if it was added."""
        _same_node(driver, target.server_id)
        record = _txt(target, fqdn, value)
        return await converge_records(driver, log, target.user, target.zone, [record])

    async def remove_txt(
        self, driver: NodeDriver, target: DnsTarget, fqdn: str, value: str, log: StepLog
    ) -> bool:
        """No ``fqdn TXT value`` in the target's zone; True if one was there."""
        _same_node(driver, target.server_id)
        record = _txt(target, fqdn, value)
        return await delete_copies(driver, log, target.user, target.zone, record)

    async def add_txt_everywhere(
        self,
        drivers: Mapping[str, NodeDriver],
        targets: Sequence[DnsTarget],
        fqdn: str,
        value: str,
        log: StepLog,
    ) -> None:
        """``add_txt`` on every DNS node holding the zone (``drivers`` by server id)."""
        for target in targets:
            await self.add_txt(drivers[target.server_id], target, fqdn, value, log)

    async def remove_txt_everywhere(
        self,
        drivers: Mapping[str, NodeDriver],
        targets: Sequence[DnsTarget],
        fqdn: str,
        value: str,
        log: StepLog,
    ) -> None:
        """``remove_txt`` on every DNS node holding the zone."""
        for target in targets:
            await self.remove_txt(drivers[target.server_id], target, fqdn, value, log)


def _same_node(driver: NodeDriver, server_id: str) -> None:
    if driver.server_id != server_id:
        raise ValueError(f"a driver for {driver.server_id} was given for {server_id}")


def _token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise ValueError("an ACME token is base64url text")
    return token


def _challenge_folder(driver: NodeDriver, spot: Http01Spot) -> str:
    _same_node(driver, spot.server_id)
    root = spot.docroot
    if not root.startswith("/") or "\n" in root or ".." in root.split("/"):
        raise ValueError(f"not a document root: {root!r}")
    return posixpath.join(posixpath.normpath(root), ".well-known", "acme-challenge")


def _txt(target: DnsTarget, fqdn: str, value: str) -> DesiredRecord:
    """The record as ``v-add-dns-record`` takes it: the name relative to the zone."""
    name, zone = fqdn.lower().rstrip("."), target.zone.lower().rstrip(".")
    if name == zone:
        relative = "@"
    elif name.endswith("." + zone):
        relative = name[: -len(zone) - 1]
    else:
        raise ValueError(f"{fqdn} is not in the zone {target.zone}")
    return DesiredRecord.parse({"record": relative, "type": "TXT", "value": value})
