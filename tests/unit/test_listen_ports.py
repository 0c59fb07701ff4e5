"""Ports for the servers tests and demos start: below the kernel's ephemeral range, where no
outgoing connection takes its local port, free when chosen, and never handed out twice."""

from __future__ import annotations

import socket

import pytest

from ops.devtools import listen_ports
from ops.devtools.listen_ports import ephemeral_low, free_port


def test_ports_are_below_the_ephemeral_range_free_and_distinct() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= port < ephemeral_low() for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # raises if it were taken


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        spare = free_port()
        picks = iter([taken, spare])  # the random pick lands on the taken port first
        monkeypatch.setattr(listen_ports.random, "randint", lambda low, high: next(picks))
        with monkeypatch.context() as patched:
            patched.setattr(listen_ports, "_handed_out", set())
            assert free_port() == spare
