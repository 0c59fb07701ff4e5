"""Running a few jobs at once in forked child processes, and never leaving one behind.

``results_of_workers`` consumes a function and its jobs; it forks one process per job, and
emits each job's result in job order, or raises ``WorkerFailed`` naming the job whose worker
raised or died without answering. Whatever happens in the parent — a failure, another job's
error, Ctrl-C — every worker still running is killed and reaped before it returns.

Workers are forked, not spawned: a spawned child imports the whole program again and costs
more than the second of work replay hands it; a forked one starts in milliseconds with the
parent's modules (and the job's objects, which are therefore not pickled). A worker opens
its own connections: it never uses one it inherited. Only the result goes back, pickled,
through a pipe of its own.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


class WorkerFailed(RuntimeError):
    """A worker raised, or ended without a result (killed, out of memory, ``os._exit``)."""


def results_of_workers(
    work: Callable[[Job], Result], jobs: Sequence[Job], names: Sequence[str]
) -> list[Result]:
    """``work(job)`` for each job, each in its own forked process; ``names`` say which job
    a failure is about."""
    context = multiprocessing.get_context("fork")
    started: list[tuple[Any, Connection]] = []  # (process, its pipe's receiving end)
    try:
        for job, name in zip(jobs, names, strict=True):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_run, args=(work, job, sender), name=f"hostwright {name}", daemon=True
            )
            process.start()
            sender.close()  # the worker's end only: its death then reads as the pipe's end
            started.append((process, receiver))
        results: dict[int, Any] = {}
        waiting = {receiver: index for index, (_, receiver) in enumerate(started)}
        while waiting:
            for ready in wait(list(waiting)):
                index = waiting.pop(ready)  # type: ignore[call-overload]
                results[index] = _answer(ready, started[index][0], names[index])  # type: ignore[arg-type]
        return [results[index] for index in range(len(started))]
    finally:
        for process, receiver in started:
            receiver.close()
            if process.is_alive():
                process.kill()
            process.join()


def _answer(receiver: Connection, process: multiprocessing.process.BaseProcess, name: str) -> Any:
    try:
        outcome, value = receiver.recv()
    except EOFError:
        process.join()
        raise WorkerFailed(
            f"{name}: the worker ended without an answer (exit code {process.exitcode})"
        ) from None
    if outcome == "failed":
        raise WorkerFailed(f"{name}: the worker failed: {value}")
    return value


def _run(work: Callable[[Any], Any], job: Any, sender: Connection) -> None:
    """The worker's body: one answer, then out without running the parent's exit hooks."""
    try:
        answer: tuple[str, Any] = ("done", work(job))
    except BaseException as exc:  # every failure, Ctrl-C included, is the parent's to report
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
        answer = ("failed", f"{type(exc).__name__}: {exc}{where}")
    try:
        sender.send(answer)
    finally:
        sender.close()
        os._exit(0)
