"""Settings keep their secrets: no repr or str shows a token, key, WHMCS secret or database
password; a short secret key and a WHMCS secret sent over plain HTTP to another host are
refused at start with one readable line."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ops.settings import Settings, SettingsError

KEY = "k" * 40
TOKEN = "api-token-that-must-not-show-0123456789"
WHMCS_SECRET = "whmcs-secret-that-must-not-show"
DB_PASSWORD = "db-pa55word-that-must-not-show"
OLD_KEY = "an-old-key-that-must-not-show-0123456789"


def _environ(**extra: str) -> dict[str, str]:
    return {
        "HOSTWRIGHT_API_TOKEN": TOKEN,
        "HOSTWRIGHT_SECRET_KEY": KEY,
        **{f"HOSTWRIGHT_{name.upper()}": value for name, value in extra.items()},
    }


def test_no_repr_or_str_of_settings_shows_a_secret() -> None:
    settings = Settings.load(
        _environ(
            database_url=f"postgresql://hostwright:{DB_PASSWORD}@db.internal/hostwright",
            amqp_url=f"amqp://hostwright:{DB_PASSWORD}@mq.internal/",
            whmcs_url="https://billing.example.com",
            whmcs_identifier="ident",
            whmcs_secret=WHMCS_SECRET,
            old_secret_keys=OLD_KEY,
        )
    )
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        for secret in (TOKEN, KEY, WHMCS_SECRET, DB_PASSWORD, OLD_KEY):
            assert secret not in text
        assert "db.internal" in text  # the rest of the URL stays readable
        assert "mq.internal" in text


def test_every_field_named_for_a_token_or_secret_is_kept_out_of_the_repr() -> None:
    for field in fields(Settings):
        if "token" in field.name or "secret" in field.name:
            value = "x" * 32 + field.name
            shown = repr(Settings(**{field.name: value}))  # type: ignore[arg-type]
            assert value not in shown, field.name


def test_a_database_url_without_a_password_is_shown_as_it_is() -> None:
    settings = Settings(database_url="sqlite:///data/hostwright.sqlite")
    assert "sqlite:///data/hostwright.sqlite" in repr(settings)


@pytest.mark.parametrize("key", ["short", "x" * 31])
def test_a_secret_key_shorter_than_32_characters_is_refused_at_start(key: str) -> None:
    with pytest.raises(SettingsError, match="HOSTWRIGHT_SECRET_KEY must be at least 32") as raised:
        Settings.load(_environ(secret_key=key))
    assert key not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_retired_secret_key_shorter_than_32_characters_is_refused_too() -> None:
    with pytest.raises(SettingsError, match="HOSTWRIGHT_OLD_SECRET_KEYS"):
        Settings.load(_environ(old_secret_keys=f"{OLD_KEY},short"))


def test_retired_secret_keys_without_a_current_key_are_refused() -> None:
    environ = _environ(old_secret_keys=OLD_KEY)
    del environ["HOSTWRIGHT_SECRET_KEY"]
    with pytest.raises(SettingsError, match="needs HOSTWRIGHT_SECRET_KEY"):
        Settings.load(environ)


def test_retired_secret_keys_are_a_comma_separated_list() -> None:
    settings = Settings.load(_environ(old_secret_keys=f" {OLD_KEY} , {'y' * 32},"))
    assert settings.retired_secret_keys == (OLD_KEY, "y" * 32)


@pytest.mark.parametrize(
    "url", ["http://billing.example.com", "http://10.0.0.5/whmcs", "http://localhost.evil.com"]
)
def test_the_whmcs_secret_is_refused_over_plain_http_to_another_host(url: str) -> None:
    with pytest.raises(SettingsError, match="https"):
        Settings.load(_environ(whmcs_url=url, whmcs_identifier="ident", whmcs_secret=WHMCS_SECRET))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.8.9.10/whmcs",
        "http://[::1]:8080",
        "http://localhost",
        "https://billing.example.com",
    ],
)
def test_the_whmcs_secret_may_go_over_http_to_loopback_or_over_https(url: str) -> None:
    settings = Settings.load(
        _environ(whmcs_url=url, whmcs_identifier="ident", whmcs_secret=WHMCS_SECRET)
    )
    assert settings.whmcs_url == url
