"""The registered nodes, read from the store's Server events — the truth, with no view lag,
so an order placed right after ``POST /v1/servers`` already sees the new node.

Serves the pipeline (placement, per-server limits), the handlers (where and how to log in)
and the gateway (register, re-key, list). Reads are cached for ``ttl`` seconds; a miss refreshes.
While the database is unavailable the servers last read stay in force (nobody can register or
re-key one meanwhile), so a handler still reaches its nodes and the pipeline places and counts
slots; the refresh is tried again a ``ttl`` later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from typing import Any

from eventsourcing.utils import get_topic

from domain.errors import NotFound
from domain.host_key import host_key_fingerprint as fingerprint
from domain.server import RegisterServer, RekeyServer, Server, ServerFacts, server_uuid
from ops.store.database import database_unavailable
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision

log = logging.getLogger(__name__)

SERVER_TOPICS = tuple(map(get_topic, (Server.Registered, Server.Updated, Server.Rekeyed)))


class ServerRegistry:
    def __init__(self, store: EventStore, *, ttl: float = 2.0) -> None:
        self._store = store
        self._registered = store.repository(Server, "server")
        self._ttl = ttl
        self._lock = threading.Lock()
        self._servers: dict[str, Server] = {}
        self._by_aggregate: dict[Any, Any] = {}
        self._after = 0  # the last notification read
        self._read_at = float("-inf")
        self._stale = False  # the last refresh failed: serving what was read before

    def register(self, command: RegisterServer) -> bool:
        """Records the registration; False when the node is registered already, unchanged."""

        def decide() -> Decision[bool]:
            existing = self._registered.find(server_uuid(command.server_id))
            if existing is None:
                return Decision(True, (Server.register(command),))
            changed = existing.handle(command)
            return Decision.of(changed, existing, changed=changed)

        changed = self._store.work.run(
            decide,
            busy=f"server {command.server_id} is being registered concurrently; try again",
            attempts=5,
        )
        if changed:
            self._read_at = float("-inf")
        return changed

    def rekey(self, command: RekeyServer) -> dict[str, Any]:
        """Records the new host, port or host key (``Server.Rekeyed``) when it changes any;
        answers ``changed`` and the old and new host-key fingerprints. Raises NotFound for a
        node not registered."""

        def decide() -> Decision[dict[str, Any]]:
            existing = self._registered.find(server_uuid(command.server_id))
            if existing is None:
                raise NotFound(f"server {command.server_id} is not registered")
            before = fingerprint(existing.host_key)
            changed = existing.rekey(command)
            outcome = {
                "changed": changed,
                "previous_fingerprint": before,
                "fingerprint": fingerprint(existing.host_key),
            }
            return Decision.of(outcome, existing, changed=changed)

        outcome = self._store.work.run(
            decide,
            busy=f"server {command.server_id} is being changed concurrently; try again",
            attempts=5,
        )
        if outcome["changed"]:
            self._read_at = float("-inf")
        return outcome

    def all(self) -> list[Server]:
        with self._lock:
            if time.monotonic() - self._read_at > self._ttl:
                try:
                    self._servers = self._read()
                    self._stale = False
                except Exception as exc:
                    if not (self._servers and database_unavailable(exc)):
                        raise
                    if not self._stale:
                        log.warning("servers: cannot refresh (%s); keeping the last read", exc)
                    self._stale = True
                self._read_at = time.monotonic()
            return sorted(self._servers.values(), key=lambda s: s.server_id)

    def refresh(self) -> None:
        """Forget the cache: the next read sees every registration up to now."""
        self._read_at = float("-inf")

    def cached(self, server_id: str) -> Server | None:
        """The server as the cache holds it, while the cache is fresh; ``None`` means "ask
        ``get``" (stale cache, or not registered as far as the cache knows)."""
        if time.monotonic() - self._read_at > self._ttl:
            return None
        return self._servers.get(server_id)

    def get(self, server_id: str) -> Server:
        for server in self.all():
            if server.server_id == server_id:
                return server
        self._read_at = float("-inf")  # registered a moment ago, perhaps
        for server in self.all():
            if server.server_id == server_id:
                return server
        raise NotFound(f"server {server_id} is not registered")

    def listing(self) -> list[dict[str, Any]]:
        """The gateway's ServerBook listing: public fields only, and the host key's fingerprint
        (to compare with ``ssh-keygen -lf`` on the node before a re-key)."""
        return [
            {**server.fields(), "host_key_fingerprint": fingerprint(server.host_key)}
            for server in self.all()
        ]

    def unregistered(self, server_ids: Collection[str]) -> list[str]:
        """The gateway's ServerBook check: the ids no registered node has, read afresh before
        saying so (another gateway may have registered one within the cache's ``ttl``)."""
        missing = [s for s in server_ids if self.cached(s) is None]
        if missing:
            self.refresh()
            known = {server.server_id for server in self.all()}
            missing = [s for s in missing if s not in known]
        return missing

    def servers(self) -> list[ServerFacts]:
        return [server.facts() for server in self.all()]

    def ips(self) -> dict[str, str]:
        return {server.server_id: server.ip for server in self.all()}

    def max_concurrency(self, server_id: str) -> int:
        try:
            return self.get(server_id).max_concurrency
        except NotFound:
            return 1

    def _read(self) -> dict[str, Server]:
        """Applies the Server events recorded since the last read (only those: the log
        only grows, and re-reading it from the start would cost more as it does)."""
        for notification in self._store.notifications_of(SERVER_TOPICS, after=self._after):
            event: Any = self._store.decode(notification)
            known = self._by_aggregate.get(event.originator_id)
            self._by_aggregate[event.originator_id] = event.mutate(known)
            self._after = notification.id
        return {server.server_id: server for server in self._by_aggregate.values()}
