"""The floors of ``hostwright bench deploy``, measured in the same run as the deploys: RabbitMQ's
own publish→consume round trip (one message at a time: p50/p99; pipelined confirms: msgs/s),
PostgreSQL's single-event save rate (eventsourcing), and Hestia commands over SSH.

Consumes the broker's and the PostgreSQL server's URLs and a scratch folder; emits a Floor.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ops.devtools.bench.scratch import scratch_postgres, scratch_vhost
from ops.devtools.bench.ssh_floor import ssh_command_rates
from ops.devtools.bench.store_floor import store_save_rate
from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.transport import Delivery, Message


@dataclass
class Floor:
    round_trip_ms: list[float]
    msgs_per_s: float
    store_saves_per_s: float
    ssh_rounds_per_s: list[float]  # commands per second in each round

    @property
    def ssh_commands_per_s(self) -> float:
        """The SSH floor: the median round's rate (ops/devtools/bench/ssh_floor.py says why)."""
        return statistics.median(self.ssh_rounds_per_s)


def measure_floors(tmp: Path, amqp_url: str, postgres_server: str) -> Floor:
    with scratch_vhost(amqp_url) as vhost_url:
        print("floor: broker publish→consume round trip …", flush=True)
        floor_rt, floor_rate = asyncio.run(_broker_floor(vhost_url))
    with scratch_postgres(postgres_server) as db_url:
        print("floor: PostgreSQL single-event saves for 3 s …", flush=True)
        saves = store_save_rate(db_url, 3.0)
    print("floor: Hestia commands over SSH, driver and simulated node in one process …")
    ssh_rates = asyncio.run(ssh_command_rates(tmp))
    return Floor(floor_rt, floor_rate, saves, ssh_rates)


async def _broker_floor(
    amqp_url: str, sequential: int = 1000, pipelined: int = 5000
) -> tuple[list[float], float]:
    """The broker alone, through the same transport the parts use: one message at a time
    (publish with confirm → delivered to a consumer → acked), then ``pipelined`` at once."""
    transport = AmqpTransport(amqp_url, f"hw-floor-{uuid.uuid4().hex[:8]}")
    await transport.connect()
    queue = f"floor-{uuid.uuid4().hex[:8]}"
    await transport.declare_queue(queue, ["floor.#"])
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_delivery(delivery: Delivery) -> None:
        arrived[delivery.message.message_id] = time.perf_counter()
        await delivery.ack()
        future = waiting.pop(delivery.message.message_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    subscription = await transport.consume(queue, on_delivery, prefetch=256)
    body = b"x" * 200
    round_trips = []
    loop = asyncio.get_running_loop()
    try:
        for i in range(sequential):
            message_id = f"s{i}"
            delivered = waiting[message_id] = loop.create_future()
            began = time.perf_counter()
            await transport.publish(Message("floor.one", body, message_id))
            await asyncio.wait_for(delivered, 10)
            round_trips.append((arrived[message_id] - began) * 1000)
        everything = loop.create_future()
        last = f"p{pipelined - 1}"
        waiting[last] = everything
        began = time.perf_counter()
        for start in range(0, pipelined, 500):
            batch = [Message("floor.many", body, f"p{i}") for i in range(start, start + 500)]
            await transport.publish_many(batch)
        await asyncio.wait_for(everything, 60)
        rate = pipelined / (time.perf_counter() - began)
    finally:
        await subscription.cancel()
        await transport.delete_queue(queue)
        await transport.delete_queue(f"{queue}.dead")
        await transport.delete_exchange()
        await transport.close()
    return round_trips, rate
