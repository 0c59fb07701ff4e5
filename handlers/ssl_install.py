"""Installing a certificate on a Hestia node: what the node has now, and ours put in its place.

``CertificateInstaller(fences, *, temp_root, poll_s)`` consumes a ``NodeDriver`` for the node, an
``InstallTarget`` (a user's web or mail domain), a ``PemBundle`` and its private key (PEM), and a
``StepLog``. ``installed`` emits the ``CertificateFacts`` of the certificate Hestia holds for the
target (``v-list-{web,mail}-domain-ssl … json``), or None. ``install`` emits an
``InstallOutcome``: the same serial there already → ``ALREADY``, nothing run; the domain
suspended → ``SKIPPED``, nothing put there; otherwise the files go into a
private folder under our login's home (every folder on the way ours and 0700, files 0600 created
exclusively, named after the target so a killed attempt's leftovers are replaced),
``v-add-*-ssl`` turns SSL on or ``v-change-*-sslcert`` replaces the certificate, the serial is
checked afterwards, and the folder is removed whatever happened.

Hestia's certificate check runs ``pkill openssl`` on the node, so two installs at once make one
fail: every install holds the node's install fence (``install_fence_key``) for its whole run.
Someone else's install (Hestia's cron, the panel) can still collide with ours: exit 2 for a key
that does match its certificate here is that, and is worth a retry.

Hestia prints the private KEY in clear in the listing; ``installed`` drops it as soon as the
listing is parsed, and no log line, note or error here ever holds a key.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from domain.ssl_types import CertificateFacts, InstallTarget, PemBundle
from handlers.hestia_command import PermanentNodeError, TransientNodeError, error_for
from handlers.ssl_ports import InstallOutcome
from handlers.step import NodeDriver, StepLog, listed_domain
from handlers.step_fence import StepFences, fenced
from handlers.x509_tools import facts, key_matches

# Under our login's home, never /tmp: a hosting user could plant a folder (or a symbolic link)
# there and receive the key. Hestia's v-add-*-ssl runs as root, so it reads it where it is.
TEMP_ROOT = ".hostwright/ssl"
_COMMANDS = {
    "web": ("v-add-web-domain-ssl", "v-change-web-domain-sslcert", "v-list-web-domain-ssl"),
    "mail": ("v-add-mail-domain-ssl", "v-change-mail-domain-sslcert", "v-list-mail-domain-ssl"),
}
_EXISTS, _INVALID = 4, 2


def install_fence_key(server_id: str) -> int:
    """The node's install fence: a stable signed 64-bit key, as ``step_fence.fence_key``."""
    digest = hashlib.blake2b(f"ssl-install/{server_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _commands(target: InstallTarget) -> tuple[str, str, str]:
    if target.kind not in _COMMANDS:
        raise ValueError(f"no certificate is installed for a {target.kind!r} domain")
    return _COMMANDS[target.kind]


def _what(target: InstallTarget) -> str:
    return f"{target.kind} domain {target.domain} of {target.user} on {target.server_id}"


def certificate_of(listing: Any, domain: str) -> str:
    """The CRT of a ``v-list-*-domain-ssl … json`` listing, "" without one. Every KEY in the
    listing is dropped first: Hestia prints it in clear, and nothing of ours keeps it."""
    entries = listing.values() if isinstance(listing, dict) else ()
    for entry in entries:
        if isinstance(entry, dict):
            entry.pop("KEY", None)
    entry = listing.get(domain) if isinstance(listing, dict) else None
    return str(entry.get("CRT", "")) if isinstance(entry, dict) else ""


def _pair_matches(bundle: PemBundle, key_pem: str) -> bool:
    try:
        return key_matches(bundle.certificate, key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False  # a key that does not even read: Hestia's exit 2 stands


class CertificateInstaller:
    """See the module docstring; ``poll_s`` is how often a waiting install looks at the fence."""

    def __init__(
        self, fences: StepFences, *, temp_root: str = TEMP_ROOT, poll_s: float = 0.2
    ) -> None:
        self._fences = fences
        self._temp_root = temp_root
        self._poll_s = poll_s

    async def installed(self, driver: NodeDriver, target: InstallTarget) -> CertificateFacts | None:
        """What the node holds for ``target``; None without a certificate (or a domain)."""
        listing = await driver.probe_json([_commands(target)[2], target.user, target.domain])
        crt = certificate_of(listing, target.domain) if listing is not None else ""
        del listing
        if not crt.strip():
            return None
        try:
            return facts(crt)
        except ValueError:
            return None  # something Hestia holds that is no certificate: ours replaces it

    def temp_folder(self, target: InstallTarget) -> str:
        """Where ``install`` puts the files for ``target`` (relative to our login's home): the
        same folder every time."""
        identity = f"{target.server_id}|{target.kind}|{target.user}|{target.domain}".encode()
        return posixpath.join(self._temp_root, hashlib.sha256(identity).hexdigest()[:16])

    async def install(
        self,
        driver: NodeDriver,
        target: InstallTarget,
        bundle: PemBundle,
        key_pem: str,
        log: StepLog,
    ) -> InstallOutcome:
        """``bundle`` with ``key_pem`` installed on ``target`` (``INSTALLED``); ``ALREADY``
        when it was there already, ``SKIPPED`` when the domain is suspended. Raises
        ``PermanentNodeError`` when Hestia's own Let's Encrypt is on for the domain (its cron
        would replace ours) or the domain is missing, ``TransientNodeError`` for what a
        retry may cure."""
        wanted = facts(bundle.certificate)
        key = install_fence_key(target.server_id)
        async with fenced(self._fences, key, poll_s=self._poll_s, on_wait=log.note):
            now = await self.installed(driver, target)
            if now is not None and now.serial == wanted.serial:
                log.note(f"{_what(target)}: certificate {wanted.serial} is installed already")
                return InstallOutcome.ALREADY
            conf = await listed_domain(driver, target.kind, target.user, target.domain)
            if conf is None:
                raise PermanentNodeError(f"{_what(target)}: the domain is not there")
            if conf.get("LETSENCRYPT") == "yes":
                raise PermanentNodeError(
                    f"{_what(target)}: Hestia's own Let's Encrypt is on for {target.domain}, "
                    "and its daily renewal would replace our certificate; turn it off in "
                    "Hestia for this domain"
                )
            if conf.get("SUSPENDED") == "yes":
                log.note(f"{_what(target)}: suspended; certificate not installed")
                return InstallOutcome.SKIPPED
            ssl_on = conf.get("SSL", "") not in ("", "no")
            await self._put(driver, target, bundle, key_pem, ssl_on, log)
            after = await self.installed(driver, target)
            if after is None or after.serial != wanted.serial:
                raise TransientNodeError(
                    f"{_what(target)}: serves {after.serial if after else 'no certificate'} "
                    f"after installing {wanted.serial}"
                )
            log.note(f"{_what(target)}: certificate {wanted.serial} installed")
            return InstallOutcome.INSTALLED

    async def _put(
        self,
        driver: NodeDriver,
        target: InstallTarget,
        bundle: PemBundle,
        key_pem: str,
        ssl_on: bool,
        log: StepLog,
    ) -> None:
        folder = self.temp_folder(target)
        name = target.domain  # Hestia reads <domain>.crt/.key/.ca (a mail domain's too)
        files = {f"{name}.crt": bundle.certificate.encode(), f"{name}.key": key_pem.encode()}
        if bundle.chain.strip():
            files[f"{name}.ca"] = bundle.chain.encode()
        add, change, _ = _commands(target)
        try:
            placed = await driver.put_private_files(folder, files)
            argv = [change if ssl_on else add, target.user, target.domain, placed]
            result = await driver.run(argv)
            log.ran(argv, result)
            if result.exit_status == _EXISTS and not ssl_on:
                # turned on meanwhile by someone else (the panel): replace theirs instead
                argv = [change, target.user, target.domain, placed]
                result = await driver.run(argv)
                log.ran(argv, result)
            if result.exit_status == _INVALID and _pair_matches(bundle, key_pem):
                raise TransientNodeError(
                    f"{_what(target)}: Hestia found the key pair not valid, yet it matches: "
                    "another certificate check on the node (pkill openssl) ended ours"
                )
            if result.exit_status != 0:
                raise error_for(driver.server_id, argv, result)
        finally:
            try:
                await driver.remove_tree(folder)
            except TransientNodeError as exc:
                # the next install replaces the same folder; a failed install is the news
                log.note(f"{_what(target)}: temporary folder {folder} not removed: {exc}")
