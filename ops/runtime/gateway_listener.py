"""The gateway's listening sockets, bound and listening before anything else starts.

``bind_listeners(host, port)`` emits one listening socket per address the host resolves to
(as asyncio's ``create_server`` would bind them) or raises ``ListenError``. Listening first
turns "address already in use" into one line on stderr and exit 2, before the process prints
a URL, starts nodes or talks to whatever already holds the port, instead of a traceback from
the web server after every other part has started. Only a listening socket holds its port:
two sockets with ``SO_REUSEADDR`` may both be bound to one address until one listens.
"""

from __future__ import annotations

import errno
import socket

from ops.settings import SettingsError

BACKLOG = 2048  # uvicorn's default

_HINTS = {
    errno.EADDRINUSE: "another process holds it",
    errno.EADDRNOTAVAIL: "it is not an address of this machine",
    errno.EACCES: "a port below 1024 needs privileges",
}


class ListenError(SettingsError):
    """The gateway's address cannot be listened on: taken, not this machine's, or forbidden."""


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    bare = host.removeprefix("[").removesuffix("]")  # [::1] as written in HOST:PORT
    try:
        found = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: IPv4 gets a socket of its own
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(BACKLOG)
    except OSError as exc:
        for listener in listeners:
            listener.close()
        hint = _HINTS.get(exc.errno or 0)
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            + (f"; {hint}" if hint else "")
            + " (choose another with --listen for the demo, HOSTWRIGHT_LISTEN otherwise)"
        ) from exc
    return listeners
