"""The pipeline process's CPU profile for ``hostwright bench deploy``: py-spy (when installed)
records raw stacks of every thread, and the reading sorts the samples of its event-loop thread
(uvloop: the loop itself is C) and of the threads it hands store calls to into categories.

Consumes a process id, then py-spy's raw stack file; emits the report's profile lines.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profiler(out: Path, pid: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    spy = _py_spy()
    if spy is None:
        print("(py-spy not installed: no profile; `pip install py-spy` for one)")
        return None
    argv = [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "200"]
    proc = subprocess.Popen(
        [*argv, "--idle", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the first order
    return proc, out


def stop_profiler(spy: tuple[subprocess.Popen[bytes], Path] | None) -> list[str]:
    if spy is None:
        return []
    proc, out = spy
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    return out.read_text().splitlines() if out.exists() else []


# Innermost frame first: the first of these a sample's stack passes through names its cost.
_CATEGORIES = (
    ("psycopg", "PostgreSQL client (psycopg)"),
    ("eventsourcing", "eventsourcing (aggregates, mapping, recorder)"),
    ("aiormq", "AMQP client (aio-pika/aiormq/pamqp)"),
    ("aio_pika", "AMQP client (aio-pika/aiormq/pamqp)"),
    ("pamqp", "AMQP client (aio-pika/aiormq/pamqp)"),
    ("json", "JSON encode/decode"),
    ("domain/", "domain (Task/Service aggregates, plans)"),
    ("handlers/pipeline", "pipeline decisions (handlers/pipeline.py)"),
    ("ops/", "hostwright ops glue (consumer, inbox, registry)"),
    ("asyncio", "asyncio event loop machinery"),
    ("threading", "thread hand-offs"),
    ("concurrent", "thread hand-offs"),
)
# (function, file) of a leaf frame that is waiting for work, not doing any
# (an idle pool worker blocks in C inside SimpleQueue.get, so its leaf frame is _worker; on
# uvloop the loop itself is C, so Runner.run as the leaf is waiting or the loop's own work)
_IDLE_LEAVES = (
    ("select", "selectors"),
    ("wait", "threading"),
    ("get", "queue"),
    ("_worker", "thread"),
    ("run", "runners"),
)


def _category(frames: list[str]) -> str:
    leaf = frames[-1]
    function = leaf.split(" (")[0].rsplit(".", 1)[-1]
    if "psycopg_pool" in leaf or any(
        function == name and f"{where}.py" in leaf for name, where in _IDLE_LEAVES
    ):
        return "idle"
    if "psycopg" in leaf and "wait" in leaf:
        return "waiting for PostgreSQL"
    for frame in reversed(frames):
        for pattern, label in _CATEGORIES:
            if pattern in frame:
                return label
    return "other"


def summarise(lines: list[str]) -> list[str]:
    """py-spy raw stacks (``--idle --threads``, 200 samples/s) → where the pipeline's time
    goes: its event-loop thread (decisions, AMQP) and the threads it hands store calls to."""
    rate = 200.0
    threads: dict[str, Counter[str]] = {"loop": Counter(), "store": Counter()}
    busy_functions: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or not stack.startswith("thread ("):
            continue
        count = int(count_text)
        name, _, rest = stack.partition("): ")[2].partition(";")
        frames = rest.split(";") if rest else [name]
        kind = "loop" if name.startswith("MainThread") else "store"
        if kind == "store" and not name.startswith(("asyncio_", "uvloop_")):
            continue  # psycopg's pool maintenance threads: idle all along
        category = _category(frames)
        threads[kind][category] += count
        if kind == "loop" and category != "idle":
            for function in dict.fromkeys(f.split(" (")[0] + " " + _short_file(f) for f in frames):
                busy_functions[function] += count
    loop_total = sum(threads["loop"].values())
    if not loop_total:
        return []
    out = [f"pipeline process profile (py-spy, {loop_total / rate:.0f} s of the profiled burst):"]
    idle = threads["loop"]["idle"]
    out.append(
        f"  event-loop thread: {1 - idle / loop_total:.0%} in Python, {idle / loop_total:.0%} "
        "waiting (for the broker, or a store call in a thread) or in uvloop's own C code"
    )
    out += [
        f"    {n / loop_total:6.1%}  {label}"
        for label, n in threads["loop"].most_common()
        if label != "idle"
    ]
    store = threads["store"]
    store_busy = sum(n for label, n in store.items() if label != "idle")
    out.append(
        f"  store-call threads (asyncio.to_thread): {store_busy / rate:.1f} thread-seconds "
        f"in calls ({store_busy / loop_total:.2f} calls in flight on average)"
    )
    out += [
        f"    {n / rate:6.1f} s  {label}" for label, n in store.most_common() if label != "idle"
    ]
    out.append("  event-loop thread, busiest functions (inclusive):")
    skip = ("<module>", "Runner.", "BaseEventLoop.", "Handle._run", "main ", "run ", "_run_")
    out += [
        f"    {n / loop_total:6.1%}  {name}"
        for name, n in busy_functions.most_common(60)
        if not name.startswith(skip)
    ][:12]
    return out


def _short_file(frame: str) -> str:
    inside = frame.partition(" (")[2].rstrip(")")
    path = inside.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"({path})"
