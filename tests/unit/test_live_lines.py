"""The live sink of a step's log lines: it never waits, drops (and counts) what its full
buffer cannot hold, keeps the order, survives its outlet failing, and sends exactly the masked
text the recorded log keeps; the live channel's keys never widen to other tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from handlers.hestia_command import CommandResult
from handlers.live_lines import BufferedLiveLines
from handlers.step import StepLog
from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.live_log import (
    TransportTaskLog,
    decoded_lines,
    encoded_lines,
    task_log_key,
)
from tests.fakes.line_outlets import HangingOutlet, RecordingOutlet
from tests.support.transports import wait_until


async def test_send_never_waits_and_a_full_buffer_drops_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outlet = HangingOutlet()
    lines = BufferedLiveLines(outlet, capacity=3)
    with caplog.at_level(logging.WARNING, logger="handlers.live_lines"):
        for i in range(10):  # the outlet hangs: nothing of this may wait
            lines.send("t-1", f"line {i}")
        assert lines.dropped == 7
        await wait_until(lambda: outlet.taken == ["line 0", "line 1", "line 2"], "one batch")
        for i in range(10, 14):  # room for three again while the outlet hangs: one dropped
            lines.send("t-1", f"line {i}")
    assert lines.dropped == 8
    drop_warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_warnings) == 1  # one per stretch: the drainer took a full buffer
    await lines.close()
    # what was still buffered, and the batch the outlet never finished, are lost with the sink
    assert lines.dropped == 14 and lines.failed == 0
    lines.send("t-1", "after close")
    assert lines.dropped == 15 and outlet.taken == ["line 0", "line 1", "line 2"]


async def test_one_drain_sends_one_batch_per_task_each_in_the_order_noted() -> None:
    outlet = RecordingOutlet()
    lines = BufferedLiveLines(outlet)
    for i in range(5):  # noted together, as a step's lines between two of its awaits
        lines.send(f"t-{i % 2}", f"line {i}")
    await wait_until(lambda: len(outlet.batches) == 2, "a batch per task")
    assert outlet.batches == [
        ("t-0", ["line 0", "line 2", "line 4"]),
        ("t-1", ["line 1", "line 3"]),
    ]
    lines.send("t-0", "later")  # a line after t-0's batch went: a batch of its own
    await wait_until(lambda: len(outlet.batches) == 3, "the later line")
    assert outlet.batches[-1] == ("t-0", ["later"])
    await lines.close()
    assert (lines.failed, lines.dropped) == (0, 0)


async def test_lines_of_a_settled_step_not_yet_sent_are_left_to_its_result() -> None:
    outlet = RecordingOutlet()
    lines = BufferedLiveLines(outlet, capacity=5)
    first, again = object(), object()  # two handlings of t-0 (a redelivery waits its turn)
    for i in range(4):
        lines.send(f"t-{i % 2}", f"line {i}", first if i % 2 == 0 else None)
    lines.send("t-0", "waiting", again)
    lines.settled("t-0", first)  # its result carries lines 0 and 2: they are not sent
    lines.settled("t-9", first)  # nothing buffered: nothing happens
    lines.send("t-0", "line 4", again)  # room was made: nothing is dropped
    await wait_until(lambda: len(outlet.batches) == 2, "the lines still wanted")
    assert outlet.batches == [("t-1", ["line 1", "line 3"]), ("t-0", ["waiting", "line 4"])]
    await lines.close()
    assert (lines.failed, lines.dropped) == (0, 0)


async def test_each_steps_lines_wait_from_their_own_first_line() -> None:
    """Another task's batch going out does not take a step's younger lines with it: a step
    settled within the wait from its own first line sends nothing live."""
    outlet = RecordingOutlet()
    lines = BufferedLiveLines(outlet, linger_s=2.0)
    short = object()
    lines.send("t-long", "long 1")
    await asyncio.sleep(1.0)  # however long this takes, t-short's wait ends at least a
    # second after t-long's: only a stall of a second just then would send the two together
    lines.send("t-short", "short 1", short)
    await wait_until(lambda: outlet.batches != [], "t-long's batch")
    lines.settled("t-short", short)
    await lines.close()
    assert outlet.batches == [("t-long", ["long 1"])]
    assert (lines.dropped, lines.failed) == (0, 0)


async def test_a_stretch_of_drops_that_ends_in_settling_warns_again_on_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outlet = RecordingOutlet()
    lines = BufferedLiveLines(outlet, capacity=2, linger_s=0.05)
    with caplog.at_level(logging.WARNING, logger="handlers.live_lines"):
        for stretch in range(2):
            for i in range(3):  # the third line finds the buffer full
                lines.send("t-1", f"line {i}", stretch)
            lines.settled("t-1", stretch)  # the buffer empties without a send
            await wait_until(lambda: not lines._waiting.is_set(), "the drainer idle")
    await lines.close()
    assert outlet.batches == [] and lines.dropped == 2
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 2


async def test_a_failed_send_loses_only_its_batch_and_the_drainer_lives_on() -> None:
    outlet = RecordingOutlet(refuse=("line 2",))
    lines = BufferedLiveLines(outlet)
    for i in range(4):
        lines.send(f"t-{i % 2}", f"line {i}")
    await wait_until(lambda: outlet.sent == [("t-1", "line 1"), ("t-1", "line 3")], "t-1's")
    assert (lines.failed, lines.dropped) == (2, 0)  # t-0's batch: line 0 and line 2
    lines.send("t-0", "later")
    await wait_until(lambda: outlet.sent[-1] == ("t-0", "later"), "a line after the failure")
    await lines.close()


def test_a_batch_is_one_body_and_every_line_comes_back_as_it_was_noted() -> None:
    noted = ["$ v-list-user alice json -> exit 0 (3 ms)", "two\nlines", "[not, json", "é ✓", ""]
    body = encoded_lines(noted)
    assert decoded_lines(body) == noted
    # a handler of an earlier release sent each line as a plain body
    assert decoded_lines(b"$ v-add-user alice '*****'") == ["$ v-add-user alice '*****'"]
    assert decoded_lines(b"[not json") == ["[not json"]
    assert decoded_lines(b'["a", 1]') == ['["a", 1]']


def test_a_line_sent_without_an_event_loop_is_dropped_not_raised() -> None:
    lines = BufferedLiveLines(RecordingOutlet())
    lines.send("t-1", "nowhere to go")
    assert lines.dropped == 1


def test_the_live_line_is_the_recorded_line_with_the_password_masked() -> None:
    argv = ["v-add-user", "alice", "pw-Secret9", "alice@example.com", "default", "hw 7"]
    result = CommandResult(exit_status=0, stdout="", stderr="", duration_ms=12.0)
    live: list[str] = []
    with_sink, without = StepLog(live.append), StepLog()
    for log in (with_sink, without):
        log.note("ensure_user on web1 (attempt 1)")
        log.ran(argv, result)
    assert live == with_sink.lines == without.lines
    assert (
        live[1] == "$ v-add-user alice '*****' alice@example.com default 'hw 7' -> exit 0 (12 ms)"
    )
    assert "pw-Secret9" not in "\n".join(live)


@pytest.mark.parametrize("task_id", ["", "a.b", "#", "*", "t-1.#", "t 1", "x" * 129])
async def test_an_id_that_is_not_plain_is_neither_sent_nor_followed(task_id: str) -> None:
    assert task_log_key(task_id) is None
    transport = InProcessTransport()
    await transport.connect()
    followed = [
        line async for line in TransportTaskLog(transport, transport.connect).follow(task_id)
    ]
    assert followed == [] and transport.listening() == 0


def test_plain_ids_have_their_own_key() -> None:
    uuid_id = "0f6f8d43-2a8e-4a55-9c3e-3f0b7f2f6a21"
    assert task_log_key(uuid_id) == f"tasklog.{uuid_id}"
    assert task_log_key("t_1") == "tasklog.t_1"
