"""The checks before any certificate order, each costing the CA nothing.

``Preflight(authorities, …)`` consumes the names a certificate is for, the addresses the
node serves them at, and callables that place and remove a file on the node; it emits:

- ``dns(names, addresses, wildcard=)`` → ``PreflightVerdict``: every A answer, on every
  authoritative server, is one of ``addresses`` (CNAMEs followed); AAAA is absent or one of
  them (a CA tries IPv6 first, so a stray AAAA fails HTTP-01); CAA lets the CA issue
  (``domain.ssl_policy.caa_permits``, the CA's identities from ``issuer_ids()``, our account
  from ``account_uri()`` and the validation method the order will use — DNS-01 where it can,
  else HTTP-01, HTTP-01 also when CAA's ``validationmethods`` allows only that); ``dns01``
  says every authoritative server is one of ``our_dns``. A wildcard certificate
  (``wildcard=True``, or a ``*.`` name) has no A to check and needs DNS-01.
- ``tls(names, address, now, renew_from)`` → ``CertificateFacts`` of a certificate the node
  already serves for every name, chaining to a trusted root, valid at ``now`` and not yet at
  ``renew_from(facts)``; else None (always for a ``*.`` name, which no handshake can ask for).
- ``http01(name, address, place, remove)`` → None, or why a CA's HTTP-01 fetch would fail: a
  random token is placed on the node, fetched back by name, and removed.
- ``txt_visible(fqdn, value, servers)`` → whether every server already serves the TXT value.

DNS goes first: ``tls`` and ``http01`` dial only an address ``dns`` saw the authoritative
servers give for that name, never one that came from anywhere else.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import datetime

import httpx

from domain.ssl_policy import caa_permits
from domain.ssl_types import CertificateFacts, PreflightVerdict
from handlers import x509_tools
from handlers.dns_authority import MAX_CNAME_HOPS, TIMEOUT, Authorities, Server, ZoneServers
from handlers.tls_probe import served, verifying_context

log = logging.getLogger(__name__)

IssuerIds = Callable[[], Awaitable[frozenset[str]]]
AccountUri = Callable[[], Awaitable[str | None]]  # our ACME account's URL (CAA accounturi)
PlaceToken = Callable[[str, str], Awaitable[None]]  # (token, body) into the name's docroot
RemoveToken = Callable[[str], Awaitable[None]]
CHALLENGE_PATH = "/.well-known/acme-challenge/"
MAX_BODY = 8192  # bytes of a challenge answer read at most (a token is under 100)
MAX_REDIRECTS = 10  # as Let's Encrypt follows


class Preflight:
    """The pre-flight checks of one CA (see the module docstring)."""

    def __init__(
        self,
        authorities: Authorities,
        *,
        issuer_ids: IssuerIds,
        account_uri: AccountUri | None = None,
        our_dns: Collection[str] = frozenset(),
        http_port: int = 80,
        tls_port: int = 443,
        trusted_roots_pem: str = "",
        timeout_s: float = 5.0,
    ) -> None:
        self._authorities = authorities
        self._issuer_ids = issuer_ids
        self._account_uri = account_uri
        self._our_dns = frozenset(our_dns)
        self._http_port, self._tls_port = http_port, tls_port
        self._context = verifying_context(trusted_roots_pem)
        self._timeout_s = timeout_s
        # name → the addresses its authoritative servers gave at the last passing check
        self._confirmed: dict[str, frozenset[str]] = {}

    async def dns(
        self,
        names: Sequence[str],
        addresses: Iterable[str],
        *,
        wildcard: bool = False,
        dns01_possible: bool = True,
    ) -> PreflightVerdict:
        """Whether DNS lets a CA validate and issue for ``names`` at ``addresses``.
        ``dns01_possible``: whether the certificate has a zone of ours to put a DNS-01 TXT
        in; without one the order proves by HTTP-01, and CAA is checked for that."""
        expected = frozenset(_address(a) for a in addresses)
        for name in names:  # what a failing check finds is no longer confirmed either
            self._confirmed.pop(_name(name).removeprefix("*."), None)
        servers: set[Server] = set()
        seen: dict[str, set[str]] = {}
        for name in names:
            base = _name(name).removeprefix("*.")
            zone = await self._authorities.zone_servers(base)
            if not zone.servers:
                return PreflightVerdict(False, "dns", zone.problem)
            servers.update(zone.servers)
            if wildcard or _name(name).startswith("*."):
                continue
            seen[base] = set()
            for rdtype in ("A", "AAAA"):
                reason = await self._addresses(base, rdtype, expected, zone, seen[base], 0)
                if reason is not None:
                    return PreflightVerdict(False, "dns", reason)
        dns01 = (
            dns01_possible
            and bool(servers)
            and all(s.address in self._our_dns or s.name in self._our_dns for s in servers)
        )
        wildcard = wildcard or any(_name(n).startswith("*.") for n in names)
        # the method the order will use: DNS-01 where it can, HTTP-01 when CAA allows only that
        methods = ["dns-01"] if wildcard else ["dns-01", "http-01"] if dns01 else ["http-01"]
        refused = None
        for method in methods:
            reason = await self._caa(names, method)
            if reason is None:
                dns01, refused = dns01 and method == "dns-01", None
                break
            refused = refused or reason
        if refused is not None:
            return PreflightVerdict(False, "caa", refused)
        if not dns01 and wildcard:
            shown = ", ".join(str(s) for s in sorted(servers, key=str))
            reason = f"a wildcard certificate needs DNS-01, and {shown} are not our DNS servers"
            return PreflightVerdict(False, "dns", reason)
        for name, found in seen.items():
            self._confirmed[name] = frozenset(found)
        authorities = tuple(sorted({s.address for s in servers}))
        return PreflightVerdict(True, dns01=dns01, authorities=authorities)

    async def tls(
        self,
        names: Sequence[str],
        address: str,
        now: datetime,
        renew_from: Callable[[CertificateFacts], datetime],
    ) -> CertificateFacts | None:
        """The certificate ``address`` serves for every name, if nothing needs issuing."""
        facts: CertificateFacts | None = None
        for name in names:
            found = await self._served_facts(_name(name), address)
            if found is None:
                return None
            if facts is not None and found.fingerprint != facts.fingerprint:
                log.info("TLS probe: %s serves different certificates for %s", address, names)
                return None
            facts = found
        if facts is None or not facts.not_before <= now < facts.not_after:
            return None
        if now >= renew_from(facts):
            log.info("TLS probe: the certificate %s is due for renewal", facts.serial)
            return None
        return facts

    async def _served_facts(self, name: str, address: str) -> CertificateFacts | None:
        problem = self._undialable(name, address)
        if problem is None:
            outcome = await served(address, self._tls_port, name, self._context, self._timeout_s)
            if outcome.pem is not None:
                return x509_tools.facts(outcome.pem)
            problem = outcome.problem
        log.info("TLS probe: %s", problem)
        return None

    async def http01(
        self, name: str, address: str, place: PlaceToken, remove: RemoveToken
    ) -> str | None:
        """None if a CA would fetch back a token placed for ``name``; else why not."""
        problem = self._undialable(name, address)
        if problem is not None:
            return problem
        token = secrets.token_urlsafe(32)
        body = f"{token}.{secrets.token_urlsafe(16)}"
        try:
            await place(token, body)
            return await self._fetch(_name(name), address, token, body)
        finally:
            await remove(token)

    async def txt_visible(self, fqdn: str, value: str, servers: Iterable[str]) -> bool:
        """Whether every server at ``servers`` (addresses) serves TXT ``value`` at ``fqdn``."""
        for address in servers:
            answer = await self._authorities.ask(address, fqdn, "TXT")
            if value not in (_txt(r) for r in answer.records):
                return False
        return True

    async def _addresses(
        self,
        name: str,
        rdtype: str,
        expected: frozenset[str],
        zone: ZoneServers,
        seen: set[str],
        hops: int,
    ) -> str | None:
        aliases: set[str] = set()
        for server in zone.servers:
            answer = await self._authorities.ask(server.address, name, rdtype)
            if answer.rcode == TIMEOUT:
                return f"{server} did not answer for {name} {rdtype}"
            if answer.rcode == "NXDOMAIN":
                return f"{name} does not exist on {server}"
            if answer.rcode != "NOERROR":
                return f"{server} answered {answer.rcode} for {name} {rdtype}"
            for record in answer.records:
                if _address(record) not in expected:
                    return f"{rdtype} {record} is not this server ({name} on {server})"
                seen.add(_address(record))
            if answer.cname is not None and not answer.records:
                aliases.add(answer.cname)
            elif not answer.records and rdtype == "A":
                return f"{name} has no A record on {server}"
        for alias in sorted(aliases):
            if hops >= MAX_CNAME_HOPS:
                return f"{name} is an alias of an alias … more than {MAX_CNAME_HOPS} deep"
            target = await self._authorities.zone_servers(alias)
            if not target.servers:
                return f"{name} is an alias of {alias}, and {target.problem}"
            reason = await self._addresses(alias, rdtype, expected, target, seen, hops + 1)
            if reason is not None:
                return reason
        return None

    async def _caa(self, names: Sequence[str], method: str) -> str | None:
        ids = await self._issuer_ids()
        account = None if self._account_uri is None else await self._account_uri()
        for name in names:
            chain = await self._authorities.caa_chain(_name(name))
            if chain.problem is not None:
                return chain.problem
            reason = caa_permits(
                chain.sets,
                ids,
                wildcard=_name(name).startswith("*."),
                account_uri=account,
                method=method,
            )
            if reason is not None:
                return f"{reason} (checking {_name(name)})"
        return None

    def _undialable(self, name: str, address: str) -> str | None:
        if _address(address) in self._confirmed.get(_name(name), frozenset()):
            return None
        return (
            f"{address} is not an address the authoritative DNS gave for {_name(name)} "
            "at the last DNS check, so it is not dialled"
        )

    async def _fetch(self, name: str, address: str, token: str, body: str) -> str | None:
        named = httpx.URL(f"http://{name}{CHALLENGE_PATH}{token}")
        shown = str(named)
        # a CA follows redirects to https without verifying the certificate; so does this
        async with httpx.AsyncClient(
            follow_redirects=False,
            verify=False,  # noqa: S501
            trust_env=False,
            timeout=self._timeout_s,
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                port = self._http_port if named.scheme == "http" else self._tls_port
                url = named.copy_with(host=address, port=port)
                extensions = {"sni_hostname": name} if named.scheme == "https" else {}
                request = client.build_request(
                    "GET", url, headers={"Host": name}, extensions=extensions
                )
                try:
                    response = await client.send(request, stream=True)
                    try:
                        # a token is a few dozen bytes: more than MAX_BODY is never read
                        served = await _read_capped(response)
                    finally:
                        await response.aclose()
                except httpx.HTTPError as exc:
                    return f"{shown} could not be fetched from {address}:{port}: {_why(exc)}"
                if not response.is_redirect:
                    return _served(shown, response, served, body, f"{address}:{port}")
                location = named.join(response.headers.get("location", ""))
                problem = _unfollowed(location, name)
                if problem is not None:
                    return f"{shown} redirects to {location}, {problem}"
                named = location
        return f"{shown} redirects more than {MAX_REDIRECTS} times"


def _unfollowed(location: httpx.URL, name: str) -> str | None:
    """Why a CA would not follow a redirect to ``location`` for ``name``, if it would not."""
    if location.host.rstrip(".").lower() != name:
        return "another host"
    if location.scheme not in ("http", "https") or location.port is not None:
        return "which a CA does not follow (only http and https on ports 80 and 443)"
    return None


async def _read_capped(response: httpx.Response) -> bytes | None:
    """The body, or None when it is longer than ``MAX_BODY`` (the rest is never read)."""
    got = bytearray()
    async for chunk in response.aiter_bytes():
        got += chunk
        if len(got) > MAX_BODY:
            return None
    return bytes(got)


def _served(
    shown: str, response: httpx.Response, served: bytes | None, body: str, where: str
) -> str | None:
    if response.status_code != 200:
        return (
            f"{shown} answered {response.status_code} {response.reason_phrase} from {where}, "
            "not the token placed on the node"
        )
    if served is None:
        return f"{shown} served more than {MAX_BODY} bytes from {where}, not the token"
    if served.decode("utf-8", "replace").strip() != body:
        return f"{shown} served other content than the token placed on the node"
    return None


def _address(text: str) -> str:
    return str(ipaddress.ip_address(text.strip()))


def _name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _txt(record: str) -> str:
    return "".join(part for part in record.strip('"').split('" "'))


def _why(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
