"""HTTP(S) for the web and mail roles: enough of a web server for ACME HTTP-01 and TLS checks.

``WebServer`` consumes the node state (to map a ``Host`` header to a user's web domain or alias,
or to a mail domain's ``mail.<d>``/``webmail.<d>``, Hestia's webmail vhost) and the simulated
file system; it answers ``GET /.well-known/acme-challenge/<token>`` with the file of that name
under the site's document root (webmail's is ``/var/lib/roundcube/public_html``, Hestia's
nginx template), and 404 for anything else. A suspended
domain answers every request with Hestia's suspended page ("This site is currently suspended",
``templates/web/suspend``); Hestia's nginx sends it with 200, the simulator with 403 so that
no check can take it for the site. HTTPS presents
the certificate installed for the requested name (chosen by SNI: ``v-add-web-domain-ssl`` for a
site, ``v-add-mail-domain-ssl`` for webmail) with its ``.ca`` chain, or else a self-signed one
generated once into ``DIR/https_default.crt``/``.key``. Plain asyncio: one request per
connection, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.devtools.simnode.state import NodeState

_CHALLENGE = "/.well-known/acme-challenge/"
WEBMAIL_ROOT = "/var/lib/roundcube/public_html"
WEBMAIL_PREFIXES = ("mail.", "webmail.")
SUSPENDED_PAGE = (
    b'<!doctype html>\n<html lang="en">\n<head><title>Access Denied</title></head>\n'
    b"<body><h1>This site is currently suspended</h1>\n<p>If you are the owner of this site, "
    b"please contact support for more information.</p></body>\n</html>\n"
)


def ensure_default_certificate(data_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for names the node has no certificate for."""
    crt, key_path = data_dir / "https_default.crt", data_dir / "https_default.key"
    if crt.exists() and key_path.exists():
        return crt, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hestia-simnode")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


@dataclass(frozen=True)
class Site:
    """What serves a name: its user, the key of its certificate in the user's ``ssl`` table
    (the web domain, or ``mail.<d>``), its document root and whether it is suspended."""

    user: str
    certificate: str
    docroot: str
    suspended: bool


def find_site(state: NodeState, host: str) -> Site | None:
    """The site serving ``host``: a web domain itself or one of its aliases, else the webmail
    of a mail domain (``mail.<d>``, ``webmail.<d>``)."""
    host = host.split(":", 1)[0].rstrip(".").lower()
    for user, data in state.users.items():
        for domain, conf in data.web.items():
            if host == domain or host in conf.get("ALIAS", "").split(","):
                root = conf.get("CUSTOM_DOCROOT") or f"/home/{user}/web/{domain}/public_html"
                return Site(user, domain, root, conf.get("SUSPENDED") == "yes")
    for prefix in WEBMAIL_PREFIXES:
        domain = host.removeprefix(prefix)
        if domain == host:
            continue
        for user, data in state.users.items():
            if domain in data.mail:
                return Site(user, f"mail.{domain}", WEBMAIL_ROOT, False)
    return None


class WebServer:
    """The node's HTTP and HTTPS listeners; port 0 picks free ports."""

    def __init__(
        self,
        data_dir: Path,
        host: str,
        http_port: int,
        https_port: int,
        state: Callable[[], NodeState],
    ) -> None:
        self.host, self.http_port, self.https_port = host, http_port, https_port
        self.fs_root = data_dir / "fs"
        self._state = state
        self._default = ensure_default_certificate(data_dir)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        http = await asyncio.start_server(self._handle, self.host, self.http_port)
        https = await asyncio.start_server(
            self._handle, self.host, self.https_port, ssl=self._context_with_sni()
        )
        self._servers = [http, https]
        self.http_port = http.sockets[0].getsockname()[1]
        self.https_port = https.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self._servers = []

    def _context_with_sni(self) -> ssl.SSLContext:
        context = self._context(*(p.read_text() for p in self._default))
        context.sni_callback = self._pick_certificate
        return context

    def _context(self, crt: str, key: str, chain: str = "") -> ssl.SSLContext:
        cache_key = crt + chain
        context = self._contexts.get(cache_key)
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            # load_cert_chain only reads files: hand it private temporary copies.
            with tempfile.TemporaryDirectory() as tmp:
                crt_file, key_file = Path(tmp, "c.pem"), Path(tmp, "k.pem")
                crt_file.write_text(crt + ("\n" + chain if chain else ""))
                key_file.write_text(key)
                context.load_cert_chain(crt_file, key_file)
            self._contexts[cache_key] = context
        return context

    def _pick_certificate(
        self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        site = find_site(self._state(), server_name or "")
        if site is None:
            return
        data = self._state().users.get(site.user)
        installed = data.ssl.get(site.certificate) if data else None
        if installed:
            sock.context = self._context(
                installed["CRT"], installed["KEY"], installed.get("CA", "")
            )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._respond(reader)
            kind = "text/html" if body.startswith(b"<!doctype html>") else "text/plain"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[str, bytes]:
        request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = request.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        site = find_site(self._state(), headers.get("host", ""))
        if site is not None and site.suspended:
            return "403 Forbidden", b"" if method == "HEAD" else SUSPENDED_PAGE
        if method not in ("GET", "HEAD") or site is None or not target.startswith(_CHALLENGE):
            return "404 Not Found", b"not found\n"
        token = target[len(_CHALLENGE) :].split("?", 1)[0]
        if not token or "/" in token or token.startswith("."):
            return "404 Not Found", b"not found\n"
        path = self.fs_root / site.docroot.strip("/") / ".well-known" / "acme-challenge" / token
        if not path.is_file():
            return "404 Not Found", b"not found\n"
        body = path.read_bytes()
        return "200 OK", b"" if method == "HEAD" else body
