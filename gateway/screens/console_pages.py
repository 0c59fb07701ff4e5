"""The staff console: ``/admin/…`` (to be built)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts


def console_routes(ports: ScreenPorts) -> list[BaseRoute]:
    return []
