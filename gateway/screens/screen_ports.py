"""What the screens read and write through: the gateway's own ports, and the live feed.

``ScreenPorts`` is built by ``create_app`` from the ports the API uses (one code path, one
validation for a button and its API route); ``screen_routes`` mounts the static assets, the
client area and the staff console over it. Pages read ``views`` (and ``ssl_views``,
``usage``); ``ledger`` records their actions and is read only where the store's word is
needed (see ``gateway.screens``: a service not yet in the views, the client area's write
check, the console's Events tab).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from starlette.routing import BaseRoute

from gateway.credentials import Credentials
from gateway.ports import (
    CertificateLedger,
    CommandLedger,
    ServerBook,
    SettingsBook,
    SslViews,
    UsageRefresh,
    UsageViews,
    ViewQueries,
)
from gateway.screens.live_feed import LiveFeed


class LiveTaskLog(Protocol):
    """The lines a task's step logs while it runs, as the handler running it sends them.

    Best effort and never stored: what is recorded for the task (its log in the task-queue
    view) is unchanged, and a page shows that once the step has ended."""

    def follow(self, task_id: str) -> AsyncIterator[str]:
        """Each line logged by the task's running step from now on, until the caller stops."""


@dataclass(frozen=True)
class ScreenPorts:
    ledger: CommandLedger
    views: ViewQueries
    credentials: Credentials  # the staff console signs in with a staff credential's token
    clock: Callable[[], datetime]
    live: LiveFeed
    # signs client links and console sessions; derived from HOSTWRIGHT_SECRET_KEY by ops
    signing_key: bytes
    servers: ServerBook | None = None
    settings: SettingsBook | None = None
    certificates: CertificateLedger | None = None
    ssl_views: SslViews | None = None
    usage: UsageViews | None = None
    usage_refresh: UsageRefresh | None = None
    whmcs_api: bool = False
    task_logs: LiveTaskLog | None = None  # None: a task's log shows once its step has ended
    # the base of the client links (HOSTWRIGHT_PUBLIC_URL); None: the request's own base URL
    public_url: str | None = None

    def secure_cookies(self, request_scheme: str) -> bool:
        """Whether a cookie is sent ``Secure``: the public address is https (a TLS proxy in
        front of a gateway that sees http), or this request came over https."""
        public_https = (self.public_url or "").lower().startswith("https://")
        return public_https or request_scheme == "https"


def screen_routes(ports: ScreenPorts) -> list[BaseRoute]:
    """The static assets, ``/client/…`` and ``/admin/…``."""
    from gateway.screens.client_area import client_routes
    from gateway.screens.console_pages import console_routes
    from gateway.screens.rendering import static_assets

    return [static_assets(), *client_routes(ports), *console_routes(ports)]
