"""Both workers of a test run sweep the leftovers of dead runs as they start: a ledger the other
worker swept a moment before is no error (it was: every test of that worker needing the broker
errored, 116 of them in one CI run)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.support import run_leftovers

NO_SUCH_PID = 4_194_305  # above Linux's largest pid: never a live process


async def test_two_sweeps_of_one_dead_runs_ledger_at_once_both_end_well(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange = f"hw-test-{NO_SUCH_PID}-{uuid.uuid4().hex[:10]}"
    # in this run's own ledger too: its clean-up removes the exchange should a sweep fail
    run_leftovers.note_broker_name("exchange", exchange)
    monkeypatch.setattr(run_leftovers, "LEDGERS", tmp_path)
    ledger = tmp_path / f"{NO_SUCH_PID}.ledger"
    ledger.write_text(f"exchange {exchange}\n")
    assert run_leftovers.dead_run(NO_SUCH_PID)
    # each reads the ledger before its first await: both sweep it, one removes it first
    await asyncio.gather(
        run_leftovers.delete_broker_names(amqp_url, run_leftovers.dead_run),
        run_leftovers.delete_broker_names(amqp_url, run_leftovers.dead_run),
    )
    assert not ledger.exists()


def test_a_ledger_swept_before_it_is_read_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_leftovers, "LEDGERS", tmp_path)
    ledger = tmp_path / f"{NO_SUCH_PID}.ledger"
    ledger.write_text("removed hw-test-gone\n")

    def swept_meanwhile(run: int) -> bool:
        ledger.unlink()  # the other worker, between the listing and the read
        return True

    assert list(run_leftovers.ledgers(swept_meanwhile)) == []
