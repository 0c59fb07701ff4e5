"""A registry and recursive resolver in one, for tests, the demo and the bench: "who is
authoritative for shop.test", answered over real DNS on loopback.

``DelegationDns(host, port, auth_port)`` consumes delegations (``delegate(zone, [(ns_name,
ip)])``, ``undelegate(zone)``: the customer pointing their domain at us, or away) and emits DNS
answers over UDP and TCP, with RA set as a resolver's are:

- NS for a delegated zone: its name servers, with their addresses as glue;
- A for a registered name server's name: its address;
- anything else under a delegated zone: asked of that zone's servers (the simulated nodes' DNS
  at ``ip:auth_port``, the first that answers) and passed on, CNAMEs chased as a resolver does;
- anything else: NXDOMAIN, as the registry of a name nobody registered.

It serves as ``HOSTWRIGHT_DNS_RESOLVERS`` and as pebble's ``-dnsserver`` (``address``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable
from typing import cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_TTL = 300
_MAX_CNAME_HOPS = 8
_UDP_PAYLOAD = 512
_FORWARD_TIMEOUT_S = 2.0


class DelegationDns:
    """The double (see the module docstring); ``port`` 0 picks a free one for UDP and TCP."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, auth_port: int = 53) -> None:
        self.host, self.port, self.auth_port = host, port, auth_port
        self._zones: dict[dns.name.Name, list[tuple[dns.name.Name, str]]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``ip:port``, as ``HOSTWRIGHT_DNS_RESOLVERS`` and ``pebble -dnsserver`` take it."""
        return f"{self.host}:{self.port}"

    def delegate(self, zone: str, servers: Iterable[tuple[str, str]]) -> None:
        """Make ``servers`` (``(ns_name, ip)``) the authoritative servers of ``zone``."""
        self._zones[dns.name.from_text(zone)] = [
            (dns.name.from_text(name), ip) for name, ip in servers
        ]

    def undelegate(self, zone: str) -> None:
        """``zone`` is no longer delegated: its names do not exist for the world."""
        self._zones.pop(dns.name.from_text(zone), None)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # port 0: find one free for both UDP and TCP
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                transport.close()
                if self.port:
                    raise
                continue
            self._udp, self.port = transport, port
            return
        raise OSError(f"no port free for both UDP and TCP on {self.host}")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DelegationDns:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The resolver's response to ``query``."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.flags &= ~dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        await self._fill(response, question.name, question.rdtype, 0)
        return response

    async def _fill(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        hops: int,
    ) -> None:
        zone = self._zone_of(qname)
        glue = self._glue(qname)
        if zone is not None and qname == zone and rdtype == dns.rdatatype.NS:
            ns = dns.rrset.from_text_list(
                qname, _TTL, "IN", "NS", [str(n) for n, _ in self._zones[zone]]
            )
            response.answer.append(ns)
            for name, ip in self._zones[zone]:
                response.additional.append(dns.rrset.from_text(name, _TTL, "IN", "A", ip))
        elif glue is not None and rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            if rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(qname, _TTL, "IN", "A", glue))
        elif zone is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            await self._forward(response, zone, qname, rdtype, hops)

    async def _forward(
        self,
        response: dns.message.Message,
        zone: dns.name.Name,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        hops: int,
    ) -> None:
        upstream = None
        for _name, ip in self._zones[zone]:
            with contextlib.suppress(dns.exception.DNSException, OSError, EOFError):
                upstream, _tcp = await dns.asyncquery.udp_with_fallback(
                    dns.message.make_query(qname, rdtype), ip, _FORWARD_TIMEOUT_S, self.auth_port
                )
            if upstream is not None and upstream.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                break
            upstream = None
        if upstream is None:
            response.set_rcode(dns.rcode.SERVFAIL)
            return
        response.set_rcode(upstream.rcode())
        response.answer.extend(upstream.answer)
        wanted = upstream.get_rrset(upstream.answer, qname, dns.rdataclass.IN, rdtype)
        alias = upstream.get_rrset(upstream.answer, qname, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if wanted is None and alias is not None and rdtype != dns.rdatatype.CNAME:
            target = alias[0].target
            if hops < _MAX_CNAME_HOPS and not any(r.name == target for r in response.answer):
                await self._fill(response, target, rdtype, hops + 1)
            return
        if not upstream.answer:
            response.authority.extend(upstream.authority)

    def _zone_of(self, qname: dns.name.Name) -> dns.name.Name | None:
        held = [zone for zone in self._zones if qname.is_subdomain(zone)]
        return max(held, key=len, default=None)

    def _glue(self, qname: dns.name.Name) -> str | None:
        for servers in self._zones.values():
            for name, ip in servers:
                if name == qname:
                    return ip
        return None

    def reply_udp(
        self, data: bytes, addr: tuple[str | int, ...], out: asyncio.DatagramTransport
    ) -> None:
        """Answer one datagram in a task of its own (forwarding waits on the nodes)."""
        task = asyncio.create_task(self._reply_udp(data, addr, out))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply_udp(
        self, data: bytes, addr: tuple[str | int, ...], out: asyncio.DatagramTransport
    ) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        response = await self.answer(query)
        payload = max(_UDP_PAYLOAD, query.payload if query.edns >= 0 else 0)
        try:
            wire = response.to_wire(max_size=payload)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC | dns.flags.RA
            wire = truncated.to_wire()
        if not out.is_closing():
            out.sendto(wire, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                query = dns.message.from_wire(await reader.readexactly(length))
                wire = (await self.answer(query)).to_wire()
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, dns.exception.DNSException):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DelegationDns) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._transport is not None:
            self._server.reply_udp(data, addr, self._transport)
