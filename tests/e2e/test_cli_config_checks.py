"""Before anything starts, the command line checks the whole configuration a command needs
and says every problem at once, one line each, exit 2, having touched nothing (no database
file, no queue, no port); options with an impossible value are argparse errors naming the
option."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli_runs import closed_port, run_cli

TOKEN = "t" * 40
KEY = "k" * 40


def _problems(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert lines and all(line.startswith("hostwright: ") for line in lines), stderr
    assert "Traceback" not in stderr, stderr
    return lines


def test_up_without_configuration_names_every_missing_setting_at_once(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "up")
    assert done.returncode == 2, done.stderr
    lines = _problems(done.stderr)
    assert any("HOSTWRIGHT_API_TOKEN" in line for line in lines), lines
    assert any("HOSTWRIGHT_SECRET_KEY" in line for line in lines), lines
    assert list(tmp_path.iterdir()) == []  # no hostwright.sqlite, no lead file


def test_up_reports_bad_values_together_with_missing_ones(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "up", listen="nonsense", prefetch="many", api_token=TOKEN)
    assert done.returncode == 2, done.stderr
    text = "\n".join(_problems(done.stderr))
    for named in ("HOSTWRIGHT_LISTEN", "HOSTWRIGHT_PREFETCH", "HOSTWRIGHT_SECRET_KEY"):
        assert named in text, text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("part", "settings", "named"),
    [
        (["gateway"], {}, ["HOSTWRIGHT_SECRET_KEY", "HOSTWRIGHT_API_TOKEN"]),
        (["gateway"], {"api_token": TOKEN}, ["HOSTWRIGHT_SECRET_KEY"]),
        (["handler", "web"], {}, ["HOSTWRIGHT_SECRET_KEY"]),
    ],
)
def test_serve_names_what_its_part_needs_before_touching_the_broker_or_database(
    tmp_path: Path, part: list[str], settings: dict[str, str], named: list[str]
) -> None:
    broker = f"amqp://guest:guest@127.0.0.1:{closed_port()}/"
    done = run_cli(tmp_path, "serve", *part, amqp_url=broker, listen="127.0.0.1:0", **settings)
    assert done.returncode == 2, done.stderr
    text = "\n".join(_problems(done.stderr))
    for variable in named:
        assert variable in text, text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "part", [["gateway"], ["relay"], ["pipeline"], ["scheduler"], ["tickets"], ["handler", "dns"]]
)
def test_serve_without_a_broker_url_is_refused(tmp_path: Path, part: list[str]) -> None:
    """The in-process transport cannot carry a message to another process."""
    done = run_cli(tmp_path, "serve", *part, api_token=TOKEN, secret_key=KEY, listen="127.0.0.1:0")
    assert done.returncode == 2, done.stderr
    text = "\n".join(_problems(done.stderr))
    assert "HOSTWRIGHT_AMQP_URL" in text and "hostwright up" in text, text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["demo", "--listen", "127.0.0.1:99999"], "--listen"),
        (["demo", "--listen", "nonsense"], "--listen"),
        (["bench", "deploy", "--latency-ms", "abc"], "--latency-ms"),
        (["bench", "intake", "--stores", "mysql"], "--stores"),
    ],
)
def test_an_impossible_option_value_is_an_argparse_error_naming_the_option(
    tmp_path: Path, args: list[str], option: str
) -> None:
    done = (
        run_cli(tmp_path, *args, "--data", str(tmp_path / "d"))
        if args[0] == "demo"
        else (run_cli(tmp_path, *args))
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"argument {option}" in done.stderr, done.stderr
    assert "HOSTWRIGHT_LISTEN" not in done.stderr, done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []
