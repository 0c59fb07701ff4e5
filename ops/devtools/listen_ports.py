"""Ports for the servers the tests, the demo and the benches start, which nothing else takes
between choosing one and binding it.

``free_port(host)`` emits a port no socket is bound to on ``host`` now, picked at random
below the kernel's ephemeral range. A port asked of the kernel with ``bind(port 0)`` comes
from that range, the same one every outgoing connection takes its local port from: between
choosing it and the server binding it, a connection to PostgreSQL or RabbitMQ (or pebble,
or a node) could take it, and the server would fail to listen. Below the range only servers
that choose their port bind, and each choice is checked by binding it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below: ports of well-known services
_DEFAULT_EPHEMERAL_LOW = 32_768
_handed_out: set[int] = set()  # never the same port twice from one process


def ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        low = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW
    return low if low > _LOWEST + 1_000 else _DEFAULT_EPHEMERAL_LOW


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, outside the ephemeral range (see the module docstring)."""
    high = ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(_LOWEST, high)  # noqa: S311 - a port, not a secret
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free port on {host} between {_LOWEST} and {high}")
