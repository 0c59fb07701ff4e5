"""Settings name every problem at once: a value that does not convert keeps its default so
the rest is still checked, and each problem is one line naming its variable."""

from __future__ import annotations

import pytest

from ops.settings import Settings, SettingsError


def test_every_bad_value_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.load(
            {
                "HOSTWRIGHT_LISTEN": "nonsense",
                "HOSTWRIGHT_PREFETCH": "many",
                "HOSTWRIGHT_LEASE_S": "-1",
                "HOSTWRIGHT_SECRET_KEY": "short",
                "HOSTWRIGHT_AMQP_URL": "http://broker",
            }
        )
    problems = raised.value.problems
    assert str(raised.value).splitlines() == list(problems)
    for variable in (
        "HOSTWRIGHT_LISTEN",
        "HOSTWRIGHT_PREFETCH",
        "HOSTWRIGHT_LEASE_S",
        "HOSTWRIGHT_SECRET_KEY",
        "HOSTWRIGHT_AMQP_URL",
    ):
        assert sum(variable in problem for problem in problems) == 1, problems
    assert not any("short" in problem for problem in problems)  # no secret in a message


def test_read_keeps_the_default_of_a_value_that_does_not_convert() -> None:
    settings, problems = Settings.read(
        {"HOSTWRIGHT_PREFETCH": "many", "HOSTWRIGHT_RELAY_BATCH": "7"}
    )
    assert settings.prefetch == Settings().prefetch and settings.relay_batch == 7
    assert problems == ["HOSTWRIGHT_PREFETCH must be a whole number"]


def test_a_port_above_65535_is_refused() -> None:
    _, problems = Settings.read({"HOSTWRIGHT_LISTEN": "127.0.0.1:99999"})
    assert len(problems) == 1 and "HOSTWRIGHT_LISTEN" in problems[0], problems


@pytest.mark.parametrize(
    ("url", "good"),
    [
        ("https://panel.example.com", True),
        ("http://127.0.0.1:8080/", True),
        ("https://panel.example.com/hosting", False),
        ("panel.example.com", False),
        ("ftp://panel.example.com", False),
        ("https://panel.example.com/?x=1", False),
        ("https://user:pw@panel.example.com", False),
        ('https://panel.example.com/"><script>', False),
    ],
)
def test_the_public_url_is_a_base_a_client_link_can_start_with(url: str, good: bool) -> None:
    _, problems = Settings.read({"HOSTWRIGHT_PUBLIC_URL": url})
    assert bool([p for p in problems if "HOSTWRIGHT_PUBLIC_URL" in p]) is not good, problems
