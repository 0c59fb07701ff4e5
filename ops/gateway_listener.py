"""The gateway's listening socket, bound before anything else starts.

``bind_listener(host, port)`` emits a bound socket or raises ``ListenError``. Binding first
turns "address already in use" into one line on stderr and exit 2, before the process prints a
URL, starts nodes or talks to whatever already holds the port, instead of a traceback from the
web server after every other part has started.
"""

from __future__ import annotations

import socket

from ops.settings import SettingsError


class ListenError(SettingsError):
    """The gateway's address cannot be listened on: taken, or not an address of this machine."""


def bind_listener(host: str, port: int) -> socket.socket:
    bare = host.removeprefix("[").removesuffix("]")  # [::1] as written in HOST:PORT
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        listener.close()
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; another process holds "
            "it, or it is not an address of this machine (choose another with --listen for "
            "the demo, HOSTWRIGHT_LISTEN otherwise)"
        ) from exc
    return listener
