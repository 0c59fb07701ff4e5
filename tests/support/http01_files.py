"""A static HTTP-01 responder on 127.0.0.1: serves ``/.well-known/acme-challenge/<token>`` from a
dict the test fills (token → key authorization), 404 for anything else, for any Host.

``fetched`` lists ``(host, token)`` for every challenge request, answered or not.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/.well-known/acme-challenge/"


class Http01Files:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.files: dict[str, str] = {}
        self.fetched: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path[len(PREFIX) :] if self.path.startswith(PREFIX) else None
                if token is not None:
                    owner.fetched.append((self.headers.get("Host", ""), token))
                body = owner.files.get(token or "")
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Http01Files:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
