"""Which part of the history a replay worker takes: the services, split into shards.

Every row of every view belongs to one service — its ``service_id`` column, a row about no
service belonging to the first shard — and a service's rows change only by its own events
(those of its aggregate and of its tasks) and by events of no service. So each of ``count``
workers can rebuild every view for the services of one shard, and compare just those
services' rows: the shards' verdicts add up to the whole one, and each worker decodes and
folds about ``1/count`` of the history instead of its views' share of all of it.

``Shard`` consumes a service id and emits whether it is this worker's; ``ShardOwners``, built
while the log is read, says the same of a stored event's aggregate (``takes``) and of a view
row's service (``keeps``). An event's service is known before it is decoded: the first event
of a service's aggregate and of each task names it (``SERVICE_NAMING`` in
``projections.catalogue``), and every worker reads that field of those to learn it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (from 0): the services whose id hashes to ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def owns(self, service_id: str | None) -> bool:
        """Whether the service is this shard's; no service at all is the first shard's."""
        if service_id is None:
            return self.index == 0
        # a digest, not hash(): the same in every worker whatever its hash seed (and not
        # crc32, whose low bits barely change from one numbered id to the next)
        digest = hashlib.blake2b(service_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index


@dataclass
class ShardOwners:
    """A shard's knowledge, built while reading the log, of which aggregates are whose."""

    shard: Shard
    # per stored aggregate id: whether its service is this shard's
    mine: dict[Any, bool] = field(default_factory=dict)
    # per service id: ``shard.owns`` of it, worked out once
    _owned: dict[str, bool] = field(default_factory=dict)

    def learn(self, aggregate: Any, service_id: str) -> bool:
        """Records the service an aggregate belongs to; whether it is this shard's."""
        owned = self._owned.get(service_id)
        if owned is None:
            owned = self._owned[service_id] = self.shard.owns(service_id)
        self.mine[aggregate] = owned
        return owned

    def takes(self, aggregate: Any) -> bool:
        """Whether to fold an event of this aggregate: its service's, or of no known service."""
        return self.mine.get(aggregate, True)

    def keeps(self, service_id: str | None) -> bool:
        """Whether a view row of this service is compared by this shard."""
        if service_id is None:
            return self.shard.owns(None)
        owned = self._owned.get(service_id)
        if owned is None:
            owned = self._owned[service_id] = self.shard.owns(service_id)
        return owned
