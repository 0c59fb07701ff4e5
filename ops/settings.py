"""Settings: environment variables, optionally added to by a TOML file.

Precedence: environment > TOML file (``HOSTWRIGHT_CONFIG``, or ``./hostwright.toml`` when it
exists) > defaults. Keys in the TOML file are the setting names in lowercase without the
``HOSTWRIGHT_`` prefix (``database_url = "postgresql://…"``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PREFIX = "HOSTWRIGHT_"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """Every knob, with its default. See README.md → Configuration."""

    database_url: str = "sqlite:///hostwright.sqlite"
    amqp_url: str | None = None
    listen: str = "127.0.0.1:8080"
    api_token: str | None = None
    secret_key: str | None = None
    exchange: str = "hostwright"
    prefetch: int = 64
    relay_batch: int = 500
    projection_batch: int = 1000
    view_prefix: str = "hw_"
    # the deploy pipeline and its handlers
    ssh_key: str | None = None  # private key the handlers log in to nodes with (a path)
    retry_max_attempts: int = 5
    retry_initial_backoff_s: float = 5.0
    retry_max_backoff_s: float = 600.0
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    dispatch_batch: int = 200
    command_timeout_s: float = 120.0
    # Vanity mode: the provider's own domain, shared mail user and DNS zone owner
    vanity_domain: str | None = None
    vanity_mail_user: str | None = None
    vanity_dns_user: str | None = None
    vanity_mail_server: str | None = None  # server_id holding the shared mail user

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = environ.get(PREFIX + "CONFIG")
        if config_path is None and Path("hostwright.toml").exists():
            config_path = "hostwright.toml"
        if config_path:
            try:
                values.update(tomllib.loads(Path(config_path).read_text()))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"cannot read settings file {config_path}: {exc}") from exc
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SettingsError(f"unknown setting(s) in {config_path}: {', '.join(unknown)}")
        for name in known:
            if PREFIX + name.upper() in environ:
                values[name] = environ[PREFIX + name.upper()]
        for name in (
            "prefetch",
            "relay_batch",
            "projection_batch",
            "retry_max_attempts",
            "dispatch_batch",
        ):
            if name in values:
                values[name] = _positive_int(name, values[name])
        for name in (
            "retry_initial_backoff_s",
            "retry_max_backoff_s",
            "lease_s",
            "heartbeat_s",
            "command_timeout_s",
        ):
            if name in values:
                values[name] = _positive_float(name, values[name])
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError("HOSTWRIGHT_DATABASE_URL must be sqlite:///path or postgresql://…")
        if self.amqp_url is not None and not self.amqp_url.startswith(("amqp://", "amqps://")):
            raise SettingsError("HOSTWRIGHT_AMQP_URL must be amqp://… or amqps://…")
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError("HOSTWRIGHT_LISTEN must be HOST:PORT")
        if not self.view_prefix.replace("_", "").isalnum():
            raise SettingsError("HOSTWRIGHT_VIEW_PREFIX must be letters, digits and '_'")

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def _positive_float(name: str, value: object) -> float:
    try:
        number = float(str(value))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number") from exc
    if not number > 0:
        raise SettingsError(f"{name} must be above 0")
    return number


def _positive_int(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number") from exc
    if number < 1:
        raise SettingsError(f"{name} must be at least 1")
    return number
