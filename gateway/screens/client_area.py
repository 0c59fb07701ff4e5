"""The customer's client area: ``/client/{service_id}?token=…`` (to be built)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts


def client_routes(ports: ScreenPorts) -> list[BaseRoute]:
    return []
