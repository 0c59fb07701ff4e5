"""The log format an operator and a log shipper read: HOSTWRIGHT_LOG_FORMAT=json gives one JSON
object per line (time, level, logger, message, the command id, the line's extra fields, the
traceback inside the object); text stays the classic line; a bad value is refused at start."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.correlation import command_context
from ops.cli import main
from ops.runtime.log_setup import CommandIdFilter, JsonFormatter, TextFormatter
from ops.settings import Settings, SettingsError


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own writing to a string, through the handler set-up's filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CommandIdFilter())
    logger = logging.getLogger("hostwright.test_log_setup")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_command_id_and_extra_fields(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    with command_context("order-42"):
        logger.warning("step %s failed", "web_user", extra={"service": "7", "server": "web1"})
    logger.info("outside any command")

    first, second = (json.loads(line) for line in lines(stream))
    assert first["level"] == "WARNING"
    assert first["logger"] == "hostwright.test_log_setup"
    assert first["message"] == "step web_user failed"
    assert first["command_id"] == "order-42"
    assert (first["service"], first["server"]) == ("7", "web1")
    assert first["time"].endswith("+00:00")
    assert "command_id" not in second  # no command: no empty field


def test_a_traceback_stays_inside_its_json_object(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it broke")

    (line,) = lines(stream)  # the multi-line traceback did not spill onto lines of its own
    record = json.loads(line)
    assert record["message"] == "it broke"
    assert "RuntimeError: boom" in record["exception"]


def test_an_explicit_command_id_wins_over_the_context(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    with command_context("batch-context"):
        logger.info("result", extra={"command_id": "the-task-s-own"})
    assert json.loads(lines(stream)[0])["command_id"] == "the-task-s-own"


def test_text_stays_the_classic_line_with_the_command_id_after_it(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())
    with command_context("order-42"):
        logger.info("request", extra={"status": 202})
    (line,) = lines(stream)
    assert " INFO hostwright.test_log_setup: request" in line
    assert line.endswith(" INFO hostwright.test_log_setup: request command_id=order-42")


def test_the_log_format_is_text_by_default_and_only_text_or_json() -> None:
    assert Settings.load({}).log_format == "text"
    assert Settings.load({"HOSTWRIGHT_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="HOSTWRIGHT_LOG_FORMAT must be text or json"):
        Settings.load({"HOSTWRIGHT_LOG_FORMAT": "xml"})


def test_a_bad_log_format_stops_a_command_with_one_readable_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOSTWRIGHT_LOG_FORMAT", "xml")
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'never.sqlite'}")

    assert main(["replay"]) == 2
    assert "HOSTWRIGHT_LOG_FORMAT must be text or json" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was made
