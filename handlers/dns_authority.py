"""Asking DNS as a CA does: find a zone's authoritative servers, then ask them directly.

``Authorities(resolvers, port=, timeout_s=)`` consumes the resolvers it may use (``ip, port``
pairs: ``Settings.dns_resolver_addresses``, else ``system_resolvers()``) and emits:

- ``zone_servers(name)`` → ``ZoneServers``: the closest enclosing zone with an NS set (asked of
  the resolvers, walking up one label at a time, never above the top-level domain) and its
  name servers' names and IPv4 addresses (glue, else an A query to the resolvers);
- ``ask(address, name, rdtype)`` → ``Answer``: one authoritative server's own answer, not a
  resolver's cache (UDP, TCP when truncated), at ``port`` (``HOSTWRIGHT_DNS_AUTHORITATIVE_PORT``);
- ``caa_chain(name)`` → ``CaaChain``: the CAA sets from the name up, closest first, stopping at
  the first non-empty one, following CNAMEs (RFC 8659), for ``domain.ssl_policy.caa_permits``.

Nothing here raises for a DNS problem: a server that does not answer is an ``Answer`` with
rcode ``TIMEOUT``, and what went wrong is text a person reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from domain.ssl_types import CaaRecord, CaaSet

MAX_CNAME_HOPS = 8
TIMEOUT = "TIMEOUT"


@dataclass(frozen=True)
class Server:
    """One authoritative name server: its NS name and the address it is asked at."""

    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


@dataclass(frozen=True)
class ZoneServers:
    """The zone holding a name and its servers; no servers comes with ``problem``, and
    ``absent`` when that is DNS's answer (no NS set up to the top-level domain), not a
    lookup that failed."""

    zone: str | None
    servers: tuple[Server, ...]
    problem: str | None = None
    absent: bool = False


@dataclass(frozen=True)
class Answer:
    """One server's answer to one question.

    ``records`` are the asked type's records (text), at the name or at the end of a CNAME
    chain the server gave with them; ``cname`` is where the chain leads when the server gave
    no such records (the asker follows it)."""

    rcode: str  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED, … or TIMEOUT (no answer at all)
    records: tuple[str, ...] = ()
    cname: str | None = None
    caa: tuple[CaaRecord, ...] = ()
    owner: str = ""  # the name the records are at (another one when CNAMEs led there)

    @property
    def answered(self) -> bool:
        """The server holds the name's zone and gave a definite answer (data or none)."""
        return self.rcode in ("NOERROR", "NXDOMAIN")


@dataclass(frozen=True)
class CaaChain:
    """CAA sets from a name upward, closest first (each at its owner, the name a CNAME led
    to when one did); ``problem`` when a lookup failed, which must stop issuance (RFC 8659 §3)."""

    sets: tuple[CaaSet, ...]
    problem: str | None = None


def system_resolvers() -> list[tuple[str, int]]:
    """The resolvers of ``/etc/resolv.conf`` (read, not asked)."""
    configured = dns.resolver.Resolver(configure=True)
    return [(str(ns), configured.port) for ns in configured.nameservers]


class Authorities:
    """Finds and asks the authoritative servers of names (see the module docstring)."""

    def __init__(
        self, resolvers: Sequence[tuple[str, int]], *, port: int = 53, timeout_s: float = 2.0
    ) -> None:
        self._resolvers = tuple(resolvers)
        self._port = port
        self._timeout_s = timeout_s

    async def zone_servers(self, name: str) -> ZoneServers:
        """The zone holding ``name`` and the addresses of its name servers."""
        candidate = dns.name.from_text(name)
        while len(candidate) > 2:  # a label or more under a top-level domain
            response = await self._resolve(candidate, dns.rdatatype.NS)
            if response is None:
                return ZoneServers(None, (), f"no DNS resolver answered ({self._shown()})")
            ns = response.get_rrset(response.answer, candidate, dns.rdataclass.IN, dns.rdatatype.NS)
            if ns is not None:
                return await self._servers_of(candidate, response, [r.target for r in ns])
            candidate = candidate.parent()
        return ZoneServers(None, (), f"no authoritative server for {_text(name)}", absent=True)

    async def ask(self, address: str, name: str, rdtype: str) -> Answer:
        """``name``'s records of type ``rdtype`` as the server at ``address`` holds them."""
        qname = dns.name.from_text(name)
        query = dns.message.make_query(qname, rdtype)
        query.flags &= ~dns.flags.RD
        response = await self._query(query, address, self._port)
        if response is None:
            return Answer(TIMEOUT)
        return _answer(response, qname, dns.rdatatype.from_text(rdtype))

    async def caa_chain(self, name: str) -> CaaChain:
        """CAA sets from ``name`` up to (not including) its top-level domain."""
        sets: list[CaaSet] = []
        current = dns.name.from_text(name.removeprefix("*."))
        while len(current) > 2:
            owner, records, problem = await self._caa_at(current, 0)
            if problem is not None:
                return CaaChain(tuple(sets), problem)
            sets.append(CaaSet(owner, records))
            if records:
                break
            current = current.parent()
        return CaaChain(tuple(sets))

    async def _caa_at(
        self, name: dns.name.Name, hops: int
    ) -> tuple[str, tuple[CaaRecord, ...], str | None]:
        """The CAA records at ``name`` (or where its CNAMEs lead), that owner, or a problem."""
        zone = await self.zone_servers(_text(name))
        if not zone.servers and zone.absent:
            return _text(name), (), None  # nothing holds the name: nothing there forbids
        if not zone.servers:  # unknown is not "no CAA": a CA would not issue either
            return _text(name), (), f"CAA lookup for {_text(name)} failed: {zone.problem}"
        failures = []
        for server in zone.servers:
            answer = await self.ask(server.address, _text(name), "CAA")
            if not answer.answered:
                failures.append(f"{server}: {answer.rcode}")
                continue
            if answer.cname is None or answer.caa:
                return answer.owner or _text(name), answer.caa, None
            if hops >= MAX_CNAME_HOPS:
                return _text(name), (), f"CAA lookup for {_text(name)} follows too many CNAMEs"
            return await self._caa_at(dns.name.from_text(answer.cname), hops + 1)
        failed = "; ".join(failures)
        return _text(name), (), f"CAA lookup for {_text(name)} failed: {failed}"

    async def _servers_of(
        self, zone: dns.name.Name, response: dns.message.Message, names: list[dns.name.Name]
    ) -> ZoneServers:
        servers = []
        for ns in sorted(names):
            glue = response.get_rrset(response.additional, ns, dns.rdataclass.IN, dns.rdatatype.A)
            if glue is None:
                found = await self._resolve(ns, dns.rdatatype.A)
                if found is not None:
                    glue = found.get_rrset(found.answer, ns, dns.rdataclass.IN, dns.rdatatype.A)
            servers += [Server(_text(ns), r.address) for r in glue or ()]
        if not servers:
            shown = ", ".join(_text(ns) for ns in names)
            return ZoneServers(
                _text(zone), (), f"the name servers of {_text(zone)} ({shown}) have no address"
            )
        return ZoneServers(_text(zone), tuple(servers))

    async def _resolve(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message | None:
        for host, port in self._resolvers:
            response = await self._query(dns.message.make_query(qname, rdtype), host, port)
            # SERVFAIL or REFUSED says nothing of the name: ask the next resolver
            if response is not None and response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return response
        return None

    async def _query(
        self, query: dns.message.Message, host: str, port: int
    ) -> dns.message.Message | None:
        try:
            response, _tcp = await dns.asyncquery.udp_with_fallback(
                query, host, timeout=self._timeout_s, port=port
            )
        except (dns.exception.DNSException, OSError, EOFError):
            return None
        return response

    def _shown(self) -> str:
        return ", ".join(f"{h}:{p}" for h, p in self._resolvers) or "none configured"


def _answer(
    response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> Answer:
    rcode = dns.rcode.to_text(response.rcode())
    current = qname
    for _ in range(MAX_CNAME_HOPS + 1):
        found = response.get_rrset(response.answer, current, dns.rdataclass.IN, rdtype)
        if found is not None:
            caa = tuple(_caa(r) for r in found) if rdtype == dns.rdatatype.CAA else ()
            return Answer(rcode, tuple(r.to_text() for r in found), None, caa, _text(current))
        alias = response.get_rrset(response.answer, current, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if alias is None or rdtype == dns.rdatatype.CNAME:
            break
        current = alias[0].target
    return Answer(rcode, (), _text(current) if current != qname else None)


def _caa(rdata: dns.rdata.Rdata) -> CaaRecord:
    tag, value = rdata.tag, rdata.value  # type: ignore[attr-defined]
    return CaaRecord(
        rdata.flags,  # type: ignore[attr-defined]
        tag.decode("ascii", "replace"),
        value.decode("utf-8", "replace"),
    )


def _text(name: dns.name.Name | str) -> str:
    return str(name).rstrip(".").lower() if isinstance(name, str) else name.to_text(True).lower()
