"""DNS over UDP for the zones the node holds (dnspython ``dns.message``).

``answer(state, query)`` is the pure part: it consumes the node state and a query message and
emits the response — authoritative answers from the zones' (unsuspended) records, NXDOMAIN with
the SOA for a name the zone lacks, NODATA for a name without that type, REFUSED for a name in no
zone held here. ``DnsServer`` binds the UDP socket and feeds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ops.devtools.simnode.state import DnsZone, NodeState


def _zone_for(state: NodeState, qname: dns.name.Name) -> tuple[dns.name.Name, DnsZone] | None:
    best: tuple[dns.name.Name, DnsZone] | None = None
    for data in state.users.values():
        for domain, zone in data.dns.items():
            origin = dns.name.from_text(domain)
            if zone.conf.get("SUSPENDED") == "yes" or not qname.is_subdomain(origin):
                continue
            if best is None or len(origin) > len(best[0]):
                best = (origin, zone)
    return best


def _owner(origin: dns.name.Name, record: str) -> dns.name.Name:
    if record in ("@", ""):
        return origin
    if record.endswith("."):
        return dns.name.from_text(record)
    return dns.name.from_text(record, origin)


def _rdata(origin: dns.name.Name, rtype: str, priority: str, value: str) -> dns.rdata.Rdata | None:
    text = f"{priority} {value}" if rtype in ("MX", "SRV") else value
    if rtype == "TXT":
        text = _txt_strings(text.replace("%quote%", "'"))
    try:
        return dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(rtype),
            text.replace("%quote%", "'"),
            origin,
            relativize=False,
        )
    except (dns.exception.DNSException, ValueError):
        return None


def _txt_strings(value: str) -> str:
    """A TXT value as DNS character-strings of at most 255 bytes each, as Hestia writes long
    values (a 2048-bit DKIM key) into the zone file."""
    # the stored value is zone-file text (DKIM's ``\;``); the strings carry the plain text
    raw = value.strip('"').replace('" "', "").replace("\\;", ";").encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join(
        '"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks
    )


def _soa(origin: dns.name.Name, zone: DnsZone) -> dns.rrset.RRset:
    soa = zone.conf.get("SOA") or f"ns1.{origin}"
    serial = zone.conf.get("SERIAL") or "1"
    text = f"{soa.rstrip('.')}. info.{origin} {serial} 7200 3600 1209600 180"
    return dns.rrset.from_text(origin, int(zone.conf.get("TTL", "14400")), "IN", "SOA", text)


def answer(state: NodeState, query: dns.message.Message) -> dns.message.Message:
    """The authoritative response to ``query`` from the zones in ``state``."""
    response = dns.message.make_response(query)
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    found = _zone_for(state, question.name)
    if found is None:
        response.set_rcode(dns.rcode.REFUSED)
        return response
    origin, zone = found
    response.flags |= dns.flags.AA
    ttl_default = int(zone.conf.get("TTL", "14400"))
    at_name = [
        r
        for r in zone.records
        if r.get("SUSPENDED") != "yes" and _owner(origin, r["RECORD"]) == question.name
    ]
    if question.rdtype == dns.rdatatype.SOA and question.name == origin:
        response.answer.append(_soa(origin, zone))
        return response
    if not at_name and question.name != origin:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(_soa(origin, zone))
        return response
    wanted = dns.rdatatype.to_text(question.rdtype)
    matching = [r for r in at_name if r["TYPE"] == wanted] or [
        r for r in at_name if r["TYPE"] == "CNAME"
    ]
    rrsets: dict[str, dns.rrset.RRset] = {}
    for record in matching:
        rdata = _rdata(origin, record["TYPE"], record.get("PRIORITY", ""), record["VALUE"])
        if rdata is None:
            continue
        rrset = rrsets.get(record["TYPE"])
        if rrset is None:
            rrset = rrsets[record["TYPE"]] = dns.rrset.RRset(
                question.name, rdata.rdclass, rdata.rdtype
            )
        rrset.add(rdata, int(record.get("TTL") or ttl_default))
    response.answer.extend(rrsets.values())
    if not rrsets:
        response.authority.append(_soa(origin, zone))
    return response


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, state: Callable[[], NodeState]) -> None:
        self._state = state
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        if self._transport is not None:
            self._transport.sendto(answer(self._state(), query).to_wire(), addr)


class DnsServer:
    """A UDP DNS listener answering from ``state()``; ``port`` 0 picks a free port."""

    def __init__(self, host: str, port: int, state: Callable[[], NodeState]) -> None:
        self.host, self.port, self._state = host, port, state
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._state), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
