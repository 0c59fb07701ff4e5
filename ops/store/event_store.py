"""The event store: an eventsourcing Application over SQLite (default) or PostgreSQL.

``EventStore`` records commands as events on Service aggregates (one transaction each) and
reads them back; its notification log is the outbox the relay follows. Events cross process
boundaries as JSON envelopes made by ``envelope``; secrets never leave the store.

Aggregates that live long and change often (a node's ServerUsage: a few events per sync,
forever) are snapshotted: ``repository(kind, noun, snapshot_every=N)`` loads them from their
latest snapshot (table ``stored_snapshots``) and the events after it, and ``save`` puts a
snapshot of such an aggregate each time its version passes a multiple of N. Snapshotting is
off for every other aggregate: their loads never look for one. A snapshot is an aggregate's
state as it was saved; when such an aggregate gains an attribute, give it a ``class_version``
and an ``upcast_vN_vN+1`` of the state (eventsourcing applies it to older snapshots).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.application import Repository as EventsourcingRepository
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    IntegrityError,
    InternalError,
    Notification,
    OperationalError,
    ProgrammingError,
)
from eventsourcing.utils import get_topic

from domain.claim import Claim, claimed_names
from domain.commands import Command, OrderService
from domain.errors import Conflict, NotFound
from domain.service import Service, service_uuid
from domain.step_chain import ServiceFacts
from ops.store.database import (
    POOL_WAIT_S,
    RECONNECT_S,
    ConnectionCheck,
    postgres_env,
    sqlite_path,
)
from ops.store.group_commit import GroupCommit
from ops.store.name_claims import NameClaims
from ops.store.unit_of_work import A, Decision, Repository, UnitOfWork

# sealed secrets stay in the store: never in broker envelopes nor ``GET …/events``
SECRET_FIELDS = frozenset({"password_sealed", "key_sealed"})
_ORDER_ATTEMPTS = 10  # decisions of one order while other orders keep claiming its names
_ENVELOPE_SKIP = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})

log = logging.getLogger(__name__)


class Hostwright(Application[uuid.UUID]):
    name = "hostwright"
    is_snapshotting_enabled = False


class EventStore:
    """Records commands and reads events. Synchronous: call it through ``asyncio.to_thread``."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.app = _open_application(database_url)
        self.recorder = self.app.recorder
        self._group = GroupCommit(self.app.save)
        self._commands = UnitOfWork(self._save_grouped)
        self.work = UnitOfWork(self.save)
        self._services = self.repository(Service, "service")
        self.claims = NameClaims(self.repository(Claim, "claim"), self._services)
        self._snapshot_every: dict[type[Any], int] = {}
        self._snapshots = _open_snapshots(self.app)

    def repository(
        self, kind: type[A], noun: str, *, snapshot_every: int | None = None
    ) -> Repository[A]:
        """The aggregates of one type; ``noun`` names them in NotFound. ``snapshot_every``:
        snapshot them each time their version passes a multiple of it, and load them from
        their latest snapshot."""
        if snapshot_every is None:
            return Repository(self.app.repository, kind, noun)
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self._snapshot_every[kind] = snapshot_every
        loads = EventsourcingRepository(event_store=self.app.events, snapshot_store=self._snapshots)
        return Repository(loads, kind, noun)

    def order_service(self, command: OrderService, password_sealed: str | None) -> bool:
        """Records Service.Ordered with the claims on the service's names, in one transaction;
        False (and nothing recorded) when the service exists already. Conflict, recording
        nothing, when the service is terminated or terminating (its id is closed for good),
        exists with other details, another live service holds one of its names
        (domain/claim.py), or another client's live service holds a domain its domain is
        under (a few point reads, on every order).

        The first attempt takes every name as new and reads nothing; when the save fails a
        claim was there before (or the service was), and each later attempt decides on what
        the store holds: of two orders racing for one name, one wins and the other is
        refused."""
        names = claimed_names(
            ServiceFacts(
                service_id=command.service_id,
                mode=command.mode,
                domain=command.domain,
                username=command.username,
                label=command.label,
            )
        )
        self.claims.check_parents(command.domain, command.service_id, command.client_id)
        for attempt in range(_ORDER_ATTEMPTS):
            service = Service.order(command, password_sealed)
            decide = self.claims.take if attempt else self.claims.fresh
            claims = decide(names, command.service_id, command.now)
            try:
                self._group.save(
                    *service.collect_events(),
                    *(event for claim in claims for event in claim.collect_events()),
                )
            except IntegrityError:
                existing = self._services.find(service.id)
                if existing is None:
                    continue  # a name was claimed before: decide on what the store holds
                existing.refuse_reorder()
                if _order_details(existing) != _order_details(service):
                    raise Conflict(
                        f"service {command.service_id} already exists with other details "
                        "(client, mode, domain, plan, username or label); use change-plan, "
                        "or order it under a new service id"
                    ) from None
                return False
            return True
        raise Conflict(f"the names of service {command.service_id} are busy; try again")

    def request(self, command: Command) -> bool:
        """Applies a lifecycle command to its service; False when it was already satisfied."""

        def decide() -> Decision[bool]:
            service = self.get_service(command.service_id)
            handled = service.handle(command)
            return Decision.of(handled, service, changed=handled)

        return self._commands.run(decide, busy=f"service {command.service_id} is busy; try again")

    def get_service(self, service_id: str) -> Service:
        return self._services.get(service_uuid(service_id), service_id)

    def save(self, *aggregates: Any) -> None:
        snapshotted = [
            (aggregate, aggregate.version - len(aggregate.pending_events))
            for aggregate in aggregates
            if type(aggregate) in self._snapshot_every
        ]
        self.app.save(*aggregates)
        for aggregate, before in snapshotted:
            every = self._snapshot_every[type(aggregate)]
            if aggregate.version // every > before // every:
                self._snapshot(aggregate)

    def _snapshot(self, aggregate: Any) -> None:
        """Puts a snapshot of the aggregate as just saved. A snapshot only spares reading
        events: one that cannot be put is logged, and the aggregate loads from its events."""
        try:
            self._snapshots.put([type(aggregate).Snapshot.take(aggregate)])
        except Exception:
            log.warning(
                "no snapshot of %s %s at version %d",
                type(aggregate).__name__,
                aggregate.id,
                aggregate.version,
                exc_info=True,
            )

    def _save_grouped(self, *aggregates: Any) -> None:
        # Events, not aggregates: a combined round that fails is retried caller by caller.
        self._group.save(
            *(event for aggregate in aggregates for event in aggregate.collect_events())
        )

    def events_of(self, service_id: str, as_of: datetime | None = None) -> list[dict[str, Any]]:
        """The service's events in order, as JSON-ready dicts, up to ``as_of`` when given."""
        stored = self.recorder.select_events(service_uuid(service_id))
        if not stored:
            raise NotFound(f"service {service_id} not found")
        events: list[Any] = [self.app.mapper.to_domain_event(s) for s in stored]
        return [event_as_json(e) for e in events if as_of is None or e.timestamp <= as_of]

    def notifications(self, after: int, limit: int) -> Sequence[Notification]:
        """Notifications with ids greater than ``after``, at most ``limit``."""
        return self.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )

    def notifications_of(
        self, topics: Sequence[str], *, after: int = 0, page: int = 1000
    ) -> Iterator[Notification]:
        """Every notification of these topics with an id greater than ``after``, in order,
        read ``page`` at a time."""
        while True:
            read = self.recorder.select_notifications(
                start=after, limit=page, topics=topics, inclusive_of_start=False
            )
            yield from read
            if len(read) < page:
                return
            after = read[-1].id

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0

    def decode(self, notification: Notification) -> DomainEventProtocol[uuid.UUID]:
        return self.app.mapper.to_domain_event(notification)

    def envelope(self, notification: Notification) -> bytes:
        """The JSON body published for one notification."""
        event = self.decode(notification)
        body = event_as_json(event)
        body["notification_id"] = notification.id
        return json.dumps(body, separators=(",", ":")).encode()

    def close(self) -> None:
        self._group.close()
        self.app.close()


def _order_details(service: Service) -> tuple[object, ...]:
    """What makes a repeated order "the same order" (the password is sealed, so not compared)."""
    return (
        service.client_id,
        service.mode,
        service.domain,
        service.username,
        service.label,
        service.plan,
    )


def _open_application(database_url: str) -> Hostwright:
    """Opens the store, creating its tables if need be. Several processes starting on a new
    PostgreSQL database race on CREATE TABLE IF NOT EXISTS ("tuple concurrently updated");
    the loser tries again, and then finds the tables there. The race also surfaces as a
    unique violation on PostgreSQL's catalogue (``pg_type_typname_nsp_index``): IntegrityError."""
    for attempt in range(5):
        try:
            app = Hostwright(env=store_env(database_url))
        except (InternalError, ProgrammingError, OperationalError, IntegrityError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
        else:
            _tune_pool(app)
            return app
    raise AssertionError("unreachable")


def _open_snapshots(app: Hostwright) -> Any:
    """The snapshot store (table ``stored_snapshots``, made if need be: raced on by processes
    starting on a new PostgreSQL database like the events' tables, see ``_open_application``)."""
    for attempt in range(5):
        try:
            recorder = app.factory.aggregate_recorder(purpose="snapshots")
        except (InternalError, ProgrammingError, OperationalError, IntegrityError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
        else:
            return app.factory.event_store(mapper=app.mapper, recorder=recorder)
    raise AssertionError("unreachable")


def _tune_pool(app: Hostwright) -> None:
    """eventsourcing's pool takes neither a reconnect timeout nor a check of our own from its
    environment: set them as the other pools have them (ops/store/database.py)."""
    pool = getattr(getattr(app.recorder, "datastore", None), "pool", None)
    if pool is not None:
        pool.reconnect_timeout = RECONNECT_S
        # psycopg_pool keeps its check here; test_database_outage.py fails if it stops using it
        pool._check = ConnectionCheck(pool)


def event_topic(event: object) -> str:
    """``Service.Ordered`` for domain.service:Service.Ordered — also the routing key."""
    return type(event).__qualname__


def aggregate_event_topics(aggregate: type[Any], created: type[Any]) -> tuple[str, ...]:
    """The stored topics of every event of ``aggregate`` (``created`` being the event it
    starts with), for reading its events by topic."""
    return tuple(
        dict.fromkeys(
            get_topic(cls)
            for cls in (created, *vars(aggregate).values())
            if isinstance(cls, type)
            and issubclass(cls, (aggregate.Event, created))
            and cls not in (aggregate.Event, aggregate.Created)
        )
    )


def event_as_json(event: Any) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if is_dataclass(event):
        for field in fields(event):
            if field.name in _ENVELOPE_SKIP or field.name in SECRET_FIELDS:
                continue
            data[field.name] = _jsonable(getattr(event, field.name))
    return {
        "topic": event_topic(event),
        "aggregate_id": str(event.originator_id),
        "version": event.originator_version,
        "timestamp": event.timestamp.isoformat(),
        "data": data,
    }


def store_env(database_url: str) -> dict[str, str]:
    if database_url.startswith("sqlite:"):
        path = sqlite_path(database_url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        # Connections open on demand up to 16; only 2 stay open while idle, so a whole
        # deployment of a dozen processes holds few of PostgreSQL's (default 100) slots.
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "14",
        # A caller waits at most POOL_WAIT_S for a connection. Pooled connections are checked
        # before use as every pool's are (``ConnectionCheck``, set in ``_tune_pool``: the
        # library's own pre-ping is a round trip every time).
        "POSTGRES_CONNECT_TIMEOUT": str(int(POOL_WAIT_S)),
        **postgres_env(database_url),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
