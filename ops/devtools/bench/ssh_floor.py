"""The SSH floor of ``hostwright bench deploy``: how many Hestia commands a second one process
can run through the real driver (asyncssh, pooled connections, pinned host key) against a
simulated node in the same process — client and server on one core, nothing else involved.

Every node command of a deploy costs at least this much CPU somewhere on the machine (the
handler's side and the node's side), so ``rate * 60 / commands per service`` bounds the
services per minute one core could deploy if it did nothing but SSH.

A round of 400 commands lasts a fifth of a second, so whatever else the machine does in that
moment moves it (by up to half on a shared machine); the rate is the median of ``rounds``
rounds: steadier than one, and still what one round gives on the usual machine, so a share of
the bound reads as it did when one round was the floor.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import asyncssh

from handlers.hestia_driver import HestiaDriver, NodeAccess
from ops.devtools.simnode import SimNode


async def ssh_command_rate(
    tmp: Path, *, commands: int = 400, concurrency: int = 8, rounds: int = 5
) -> float:
    """Commands per second: the median of ``ssh_command_rates``."""
    rates = await ssh_command_rates(tmp, commands=commands, concurrency=concurrency, rounds=rounds)
    return statistics.median(rates)


async def ssh_command_rates(
    tmp: Path, *, commands: int = 400, concurrency: int = 8, rounds: int = 5
) -> list[float]:
    """Commands per second in each of ``rounds`` rounds of ``commands`` probes, ``concurrency``
    at a time, after a warm-up."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = tmp / "ssh-floor-key"
    key_path.write_bytes(key.export_private_key())
    key_path.chmod(0o600)
    node = SimNode(tmp / "ssh-floor-node", ("dns",), ip="192.0.2.1")
    await node.start()
    node.authorize(key.export_public_key().decode())
    access = NodeAccess(
        "floor", node.host, node.port, "hostwright", node.host_public_key, (str(key_path),)
    )
    driver = HestiaDriver(access)
    try:
        for _ in range(concurrency):  # connections opened, caches warm
            await driver.run(["v-list-users", "json"])
        per_worker = max(1, commands // concurrency)

        async def worker() -> None:
            for _ in range(per_worker):
                await driver.run(["v-list-users", "json"])

        rates = []
        for _ in range(rounds):
            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            rates.append(per_worker * concurrency / (time.perf_counter() - began))
        return rates
    finally:
        await driver.close()
        await node.stop()
