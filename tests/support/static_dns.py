"""A tiny authoritative DNS answer on 127.0.0.1 for tests that point a CA (pebble's
``-dnsserver``) at names of their own: A records, TXT records (DNS-01), and nothing else.

Consumes the records a test sets (``a``, ``txt``: plain dicts, changed while it runs); emits
UDP answers — NOERROR with the record, NOERROR and empty for a known name's other types (so a
CA asking AAAA first falls back to A), NXDOMAIN for names it does not know. It never forwards
a query anywhere. ``queries`` lists what was asked, as ``(name, type)``.
"""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 5


class StaticDns:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.a: dict[str, str] = {}
        self.txt: dict[str, list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="static-dns", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def start(self) -> StaticDns:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue
            self._sock.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        values: list[str] = []
        if kind == "A" and name in self.a:
            values = [self.a[name]]
        elif kind == "TXT" and name in self.txt:
            values = [f'"{value}"' for value in self.txt[name]]
        elif name not in self.a and name not in self.txt:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, kind, values)
            )
        return response
