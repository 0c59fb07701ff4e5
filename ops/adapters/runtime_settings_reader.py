"""``RuntimeSettingsReader``: the runtime settings for the running parts, cached.

``current()`` re-reads the settings (through a SettingsBook) at most every ``ttl`` seconds;
``refresh()`` makes the next ``current()`` read them again — the pipeline calls it when a
``RuntimeSettings.Changed`` event reaches it, so a change applies at once, and the ttl bounds
the delay should that event be missed. When a re-read fails (the store is down) the last
values read stay in force and the read is tried again after the next ttl.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from domain.runtime_settings import RuntimeSettingsValues

_log = logging.getLogger("hostwright.settings")


class SettingsSource(Protocol):
    def current(self) -> RuntimeSettingsValues: ...


class RuntimeSettingsReader:
    """Synchronous (the store is behind it): from async code, call ``current`` in a thread
    or after a ``refresh`` accept one blocking read."""

    def __init__(
        self,
        source: SettingsSource,
        *,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._values: RuntimeSettingsValues | None = None
        self._read_at = float("-inf")

    def current(self) -> RuntimeSettingsValues:
        with self._lock:
            now = self._monotonic()
            if self._values is None or now - self._read_at >= self._ttl:
                self._values = self._read(now)
            return self._values

    def refresh(self) -> None:
        """Forget the cache: the next ``current()`` reads the settings again."""
        with self._lock:
            self._read_at = float("-inf")

    def _read(self, now: float) -> RuntimeSettingsValues:
        try:
            values = self._source.current()
        except Exception as exc:
            if self._values is None:
                raise
            _log.warning(
                "runtime settings: re-read failed (%s); keeping the last values", type(exc).__name__
            )
            self._read_at = now
            return self._values
        self._read_at = now
        return values
