"""What the screens read and write through: the gateway's own ports, and the live feed.

``ScreenPorts`` is built by ``create_app`` from the ports the API uses (one code path, one
validation for a button and its API route); ``screen_routes`` mounts the static assets, the
client area and the staff console over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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


def screen_routes(ports: ScreenPorts) -> list[BaseRoute]:
    """The static assets, ``/client/…`` and ``/admin/…``."""
    from gateway.screens.client_area import client_routes
    from gateway.screens.console_pages import console_routes
    from gateway.screens.rendering import static_assets

    return [static_assets(), *client_routes(ports), *console_routes(ports)]
