"""One listing of a node, each its own aggregate of one event: what a usage sync collected.

``NodeUsers.Listed`` is one ``v-list-users``: every user's figures (domain/server_usage.py
``UNITS``) at ``collected_at``. ``NodeMailboxes.Listed`` is one mailbox listing of a mail
domain (the provider's shared mail user's): each mailbox's disk use. They are saved in the
same transaction as the ``ServerUsage.SyncListed`` that ends their sync, and kept apart from
it so that loading a node's ServerUsage to decide a refresh never reads the listings (a
node's thousand users, every period, for as long as it runs). Their ids are stable per
(node, sync, listing): a sync recorded twice is refused by the store, not counted twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from eventsourcing.domain import Aggregate

USAGE_LISTING_NAMESPACE = uuid.UUID("0f6c2a9e-5d47-4b1e-93a8-7e2d5c1b4a60")


def listing_uuid(server_id: str, sync_id: int, what: str) -> uuid.UUID:
    return uuid.uuid5(USAGE_LISTING_NAMESPACE, f"usage-listing/{server_id}/{sync_id}/{what}")


class NodeUsers(Aggregate):
    class Listed(Aggregate.Created):
        server_id: str
        sync_id: int
        collected_at: datetime
        units: dict[str, str]
        users: dict[str, dict[str, int]]

    def __init__(
        self,
        server_id: str,
        sync_id: int,
        collected_at: datetime,
        units: dict[str, str],
        users: dict[str, dict[str, int]],
    ) -> None:
        self.server_id = server_id
        self.sync_id = sync_id
        self.collected_at = collected_at

    @classmethod
    def record(
        cls,
        server_id: str,
        sync_id: int,
        now: datetime,
        units: dict[str, str],
        users: dict[str, dict[str, int]],
    ) -> NodeUsers:
        return cls._create(
            cls.Listed,
            id=listing_uuid(server_id, sync_id, "users"),
            timestamp=now,
            server_id=server_id,
            sync_id=sync_id,
            collected_at=now,
            units=units,
            users=users,
        )


class NodeMailboxes(Aggregate):
    class Listed(Aggregate.Created):
        server_id: str
        sync_id: int
        collected_at: datetime
        mail_user: str
        mail_domain: str
        mailboxes: dict[str, dict[str, int]]

    def __init__(
        self,
        server_id: str,
        sync_id: int,
        collected_at: datetime,
        mail_user: str,
        mail_domain: str,
        mailboxes: dict[str, dict[str, int]],
    ) -> None:
        self.server_id = server_id
        self.sync_id = sync_id
        self.mail_domain = mail_domain

    @classmethod
    def record(
        cls,
        server_id: str,
        sync_id: int,
        now: datetime,
        mail_user: str,
        mail_domain: str,
        mailboxes: dict[str, dict[str, int]],
    ) -> NodeMailboxes:
        return cls._create(
            cls.Listed,
            id=listing_uuid(server_id, sync_id, f"mailboxes/{mail_user}/{mail_domain}"),
            timestamp=now,
            server_id=server_id,
            sync_id=sync_id,
            collected_at=now,
            mail_user=mail_user,
            mail_domain=mail_domain,
            mailboxes=mailboxes,
        )
