"""hostwright's processes run on uvloop (a dependency), or on asyncio's loop when asked."""

from __future__ import annotations

import asyncio
import gc

import pytest
import uvloop

from ops.runtime import event_loop


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_processes_run_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTWRIGHT_EVENT_LOOP", raising=False)
    assert issubclass(event_loop.run(_loop_type()), uvloop.Loop)


def test_asyncio_s_own_loop_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTWRIGHT_EVENT_LOOP", "asyncio")
    loop_type = event_loop.run(_loop_type())
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.AbstractEventLoop)


def test_an_unknown_loop_is_a_clear_error_and_nothing_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    monkeypatch.setenv("HOSTWRIGHT_EVENT_LOOP", "tokio")
    with pytest.raises(ValueError, match="HOSTWRIGHT_EVENT_LOOP must be one of uvloop, asyncio"):
        event_loop.run(main())
    assert ran == []


def test_what_was_made_before_the_loop_is_out_of_the_collector_s_sight() -> None:
    """A full collection walks only what the process made since it started: the modules,
    the app and the templates are frozen (a console page caught 70-120 ms pauses)."""
    gc.unfreeze()  # whatever an earlier test in this process froze

    async def frozen() -> int:
        return gc.get_freeze_count()

    try:
        assert event_loop.run(frozen()) > 1000
    finally:
        gc.unfreeze()
