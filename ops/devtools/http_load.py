"""A minimal HTTP/1.1 keep-alive load generator for benchmarks (not a general client).

httpx spends more CPU per request than the server under test on this 2-core machine, so
the benchmark would measure the client; this speaks just enough HTTP/1.1 (Content-Length
bodies, keep-alive) to keep the generator cheap. Open-loop mode sends on a fixed schedule
and measures latency from the *scheduled* time, so a stalled server is not hidden
(no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``th percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


RequestFactory = Callable[[int], tuple[str, str, bytes | None]]  # i -> (method, path, body)


class _Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port, self.headers = host, port, headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(
    host: str,
    port: int,
    headers: dict[str, str],
    make: RequestFactory,
    *,
    concurrency: int,
    seconds: float,
    expect: int,
) -> LoadResult:
    """``concurrency`` clients each sending the next request as soon as the last answered."""
    result = LoadResult()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        conn = _Connection(host, port, headers)
        try:
            while time.perf_counter() < deadline:
                method, path, body = make(next(counter))
                started = time.perf_counter()
                await _one(conn, method, path, body, expect, result, started)
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - began
    return result


async def open_loop(
    host: str,
    port: int,
    headers: dict[str, str],
    make: RequestFactory,
    *,
    rate: float,
    seconds: float,
    expect: int,
    connections: int = 64,
) -> LoadResult:
    """Requests sent at ``rate``/s on schedule; latency counts from the scheduled time."""
    result = LoadResult()
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Connection(host, port, headers))
    total = int(rate * seconds)
    began = time.perf_counter()
    pending: list[asyncio.Task[None]] = []

    async def fire(i: int, scheduled: float) -> None:
        conn = await idle.get()
        try:
            method, path, body = make(i)
            await _one(conn, method, path, body, expect, result, scheduled)
        finally:
            idle.put_nowait(conn)

    for i in range(total):
        scheduled = began + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(fire(i, scheduled)))
    await asyncio.gather(*pending)
    result.elapsed_s = time.perf_counter() - began
    while not idle.empty():
        idle.get_nowait().close()
    return result


async def _one(
    conn: _Connection,
    method: str,
    path: str,
    body: bytes | None,
    expect: int,
    result: LoadResult,
    started: float,
) -> None:
    result.sent += 1
    try:
        status = await conn.request(method, path, body)
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        conn.close()
        conn.writer = None
        result.errors += 1
        return
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if status == expect:
        result.ok += 1
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        result.errors += 1


def json_body(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
