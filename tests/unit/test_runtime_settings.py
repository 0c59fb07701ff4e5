"""The RuntimeSettings aggregate and its document, without a store: what is accepted, what is
refused, what a change records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import InvalidInput
from domain.runtime_settings import (
    SETTINGS_ID,
    SSL_DEFAULTS,
    USAGE_DEFAULTS,
    RuntimeSettings,
    RuntimeSettingsValues,
    parse_settings_update,
)
from domain.ssl_types import SslCadence

NOW = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
DOCUMENT: dict[str, Any] = {
    "retry": {"max_attempts": 5, "initial_backoff_s": 5.0, "max_backoff_s": 600.0},
    "concurrency": {"default": 2, "per_server": {"web1": 4}},
    "batch_size": 100,
    "tickets": {"enabled": False, "department_id": 1, "priority": "Medium"},
    "queue": {"stuck_after_s": 900.0, "clean_completed_after_s": 86400.0},
    "ssl": {
        "fast_attempts": 10,
        "fast_interval_s": 30,
        "recheck_interval_s": 3600,
        "active_interval_s": 86400,
        "freeze_after_failures": 5,
        "freeze_s": 21600,
    },
    "usage": {"period_s": 3600, "fresh_s": 60},
}
BASE = RuntimeSettingsValues.from_json(DOCUMENT)


def test_a_complete_document_round_trips() -> None:
    assert BASE.as_json() == DOCUMENT
    assert RuntimeSettingsValues.from_json(BASE.as_json()) == BASE


@pytest.mark.parametrize(
    ("section", "field"),
    [("retry", "max_backoff_s"), ("tickets", "priority"), ("batch_size", None)],
)
def test_a_complete_document_must_name_every_field(section: str, field: str | None) -> None:
    document = {
        key: dict(value) if isinstance(value, dict) else value for key, value in DOCUMENT.items()
    }
    if field is None:
        del document[section]
    else:
        del document[section][field]
    with pytest.raises(InvalidInput, match="missing setting"):
        RuntimeSettingsValues.from_json(document)
    parse_settings_update(document)  # a partial update may leave it out


def test_integers_are_accepted_as_seconds_and_kept_as_floats() -> None:
    update = parse_settings_update({"retry": {"initial_backoff_s": 2, "max_backoff_s": 8}})
    assert update.fields == {"retry.initial_backoff_s": 2.0, "retry.max_backoff_s": 8.0}
    assert isinstance(BASE.merged(update).retry.max_backoff_s, float)


def test_parsing_is_pure_and_names_only_what_was_given() -> None:
    body = {"tickets": {"priority": "High"}, "concurrency": {"per_server": {"b2": 1, "a1": 2}}}
    update = parse_settings_update(body)
    assert update.fields == {
        "concurrency.per_server": {"a1": 2, "b2": 1},
        "tickets.priority": "High",
    }
    assert body == {
        "tickets": {"priority": "High"},
        "concurrency": {"per_server": {"b2": 1, "a1": 2}},
    }


def test_the_merged_values_are_checked_as_a_whole() -> None:
    update = parse_settings_update({"retry": {"initial_backoff_s": 601}})  # each field fine
    with pytest.raises(InvalidInput, match=r"retry\.max_backoff_s \(600\) must be at least"):
        BASE.merged(update)


def test_the_first_change_adopts_the_baseline_then_records_changed() -> None:
    settings = RuntimeSettings.adopt(BASE, NOW, "admin")
    assert settings.id == SETTINGS_ID
    changed = settings.change(parse_settings_update({"batch_size": 7}), NOW, "admin")
    assert changed == ["batch_size"]
    events = settings.collect_events()
    assert [type(e).__qualname__ for e in events] == [
        "RuntimeSettings.Adopted",
        "RuntimeSettings.Changed",
    ]
    last: Any = events[-1]
    assert (last.values["batch_size"], last.changed, last.actor) == (7, ["batch_size"], "admin")
    assert settings.values.batch_size == 7


def test_a_change_to_the_same_values_records_nothing() -> None:
    settings = RuntimeSettings.adopt(BASE, NOW, "admin")
    settings.collect_events()
    assert settings.change(parse_settings_update(DOCUMENT), NOW, "admin") == []
    assert settings.change(parse_settings_update({"retry": {"max_attempts": 5}}), NOW, "a") == []
    assert settings.change(parse_settings_update({}), NOW, "admin") == []
    assert settings.collect_events() == []


def test_an_invalid_change_records_nothing_and_keeps_the_values() -> None:
    settings = RuntimeSettings.adopt(BASE, NOW, "admin")
    settings.collect_events()
    with pytest.raises(InvalidInput):
        settings.change(
            parse_settings_update({"retry": {"initial_backoff_s": 10, "max_backoff_s": 9}}),
            NOW,
            "admin",
        )
    assert settings.collect_events() == []
    assert settings.values == BASE


def test_the_values_make_a_retry_policy_and_per_server_limits() -> None:
    policy = BASE.policy()
    assert (policy.max_attempts, policy.initial_backoff_s, policy.max_backoff_s) == (5, 5.0, 600.0)
    assert BASE.max_concurrency("web1") == 4
    assert BASE.max_concurrency("web9") == 2
    assert BASE.max_concurrency("web9", registered=8) == 8


def test_the_ssl_cadence_is_a_section_of_the_document() -> None:
    assert BASE.ssl == SslCadence(
        fast_attempts=10,
        fast_interval_s=30,
        recheck_interval_s=3600,
        active_interval_s=86400,
        freeze_after=5,
        freeze_s=21600,
    )
    update = parse_settings_update({"ssl": {"fast_attempts": 3, "freeze_after_failures": 2}})
    merged = BASE.merged(update)
    assert (merged.ssl.fast_attempts, merged.ssl.freeze_after) == (3, 2)
    assert BASE.differences(merged) == ["ssl.fast_attempts", "ssl.freeze_after_failures"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"ssl": {"fast_interval_s": 1}}, "ssl.fast_interval_s must be a whole number from 5"),
        ({"ssl": {"fast_interval_s": 30.5}}, "ssl.fast_interval_s"),
        ({"ssl": {"fast_attempts": -1}}, "ssl.fast_attempts"),
        ({"ssl": {"freeze_after_failures": 0}}, "ssl.freeze_after_failures"),
        ({"ssl": {"freeze_s": 30 * 86400}}, "ssl.freeze_s"),
        ({"ssl": {"active_interval_s": 2 * 86400}}, "ssl.active_interval_s"),
        ({"ssl": {"profile": "tlsserver"}}, "ssl.profile"),
    ],
)
def test_ssl_values_out_of_bounds_are_refused_naming_the_field(body: Any, named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        BASE.merged(parse_settings_update(body))


def test_fast_mode_may_not_check_less_often_than_the_recheck() -> None:
    update = parse_settings_update({"ssl": {"fast_interval_s": 600, "recheck_interval_s": 300}})
    with pytest.raises(InvalidInput, match=r"ssl\.recheck_interval_s \(300\) must be at least"):
        BASE.merged(update)


def test_a_document_recorded_before_the_ssl_section_upcasts_with_its_defaults() -> None:
    old = {key: value for key, value in DOCUMENT.items() if key not in ("ssl", "usage")}
    for event in (RuntimeSettings.Adopted, RuntimeSettings.Changed):
        assert event.class_version == 3
        state: dict[str, Any] = {"values": old, "changed": ["batch_size"], "actor": "a"}
        event.upcast_v1_v2(state)
        event.upcast_v2_v3(state)
        assert RuntimeSettingsValues.from_json(state["values"]).ssl == SSL_DEFAULTS
        assert "ssl" not in old  # the stored state is not changed in place
    recent = {"values": DOCUMENT}
    RuntimeSettings.Changed.upcast_v1_v2(recent)
    assert recent["values"]["ssl"] == DOCUMENT["ssl"]  # a section present is kept


def test_a_document_recorded_before_the_usage_section_upcasts_with_its_defaults() -> None:
    old = {key: value for key, value in DOCUMENT.items() if key != "usage"}
    state: dict[str, Any] = {"values": old, "changed": ["batch_size"], "actor": "a"}
    RuntimeSettings.Changed.upcast_v2_v3(state)
    assert RuntimeSettingsValues.from_json(state["values"]).usage == USAGE_DEFAULTS
    update = parse_settings_update({"usage": {"period_s": 600, "fresh_s": 10}})
    merged = BASE.merged(update)
    assert (merged.usage.period_s, merged.usage.fresh_s) == (600, 10)
    with pytest.raises(InvalidInput, match=r"usage\.period_s"):
        parse_settings_update({"usage": {"period_s": 0}})


def test_a_listing_may_not_stay_fresh_longer_than_a_period() -> None:
    with pytest.raises(InvalidInput, match=r"usage\.fresh_s \(7200\) must be at most"):
        BASE.merged(parse_settings_update({"usage": {"fresh_s": 7200, "period_s": 3600}}))
    with pytest.raises(InvalidInput, match=r"usage\.fresh_s \(120\) must be at most"):
        RuntimeSettingsValues.from_json({**DOCUMENT, "usage": {"period_s": 60, "fresh_s": 120}})
    same = BASE.merged(parse_settings_update({"usage": {"fresh_s": 600, "period_s": 600}}))
    assert (same.usage.period_s, same.usage.fresh_s) == (600, 600)
