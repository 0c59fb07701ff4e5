"""Settings: environment variables, optionally added to by a TOML file.

Precedence: environment > TOML file (``HOSTWRIGHT_CONFIG``, or ``./hostwright.toml`` when it
exists) > defaults. Keys in the TOML file are the setting names in lowercase without the
``HOSTWRIGHT_`` prefix (``database_url = "postgresql://…"``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from domain.ticket import PRIORITIES
from gateway.credentials import MIN_TOKEN_LENGTH

PREFIX = "HOSTWRIGHT_"
MIN_SECRET_KEY_CHARS = 32
MAX_PORT = 65535
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
STAGING_ACME_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"
SSL_MODES = ("off", "auto")


class SettingsError(ValueError):
    """What is wrong with the settings: one or more problems, one line each, so an operator
    fixes them all in one go instead of learning of the next one on each start."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


@dataclass(frozen=True)
class Settings:
    """Every knob, with its default. See README.md → Configuration."""

    database_url: str = "sqlite:///hostwright.sqlite"
    amqp_url: str | None = None
    listen: str = "127.0.0.1:8080"
    # the address customers reach the gateway at (https://panel.example.com, no path): the
    # base of the client links it mints; unset: the address the link was asked for at
    public_url: str | None = None
    api_token: str | None = None
    staff_token: str | None = None  # staff's bearer token
    tokens_file: str | None = None  # more named credentials: name, scopes, SHA-256 of the token
    secret_key: str | None = None
    # keys passwords were sealed under before the current one, comma-separated: they still
    # unseal until `hostwright rotate-key` has re-sealed everything under the current key
    old_secret_keys: str | None = None
    exchange: str = "hostwright"
    prefetch: int = 64
    # a message failing this many times for a reason of its own (not an outage) is dead-lettered
    dead_letter_after: int = 5
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
    handler_concurrency: int = 32  # steps one handler process runs at once (all its nodes)
    # task-queue housekeeping (POST /v1/tasks/bulk): the age clean_completed hides, and how
    # long a lease may have run out before force_fail_stuck takes a task (unset: twice lease_s)
    clean_completed_after_s: float = 7 * 24 * 3600.0
    stuck_after_s: float | None = None
    # the cron runner: how often each periodic job runs (ops/services/cron_jobs.py)
    cron_retries_s: float = 1.0
    cron_stuck_s: float = 10.0
    cron_terminations_s: float = 30.0
    cron_tickets_s: float = 30.0
    cron_inbox_s: float = 600.0
    # how long a consumer's inbox remembers a handled message id (ops/messaging/inbox.py)
    inbox_retention_hours: float = 7 * 24.0
    # after SIGTERM/SIGINT: how long a part may finish its work before it is cancelled (the
    # process exits at most 5 s later whatever it waits on: ops/runtime/stopping.py)
    stop_grace_s: float = 15.0
    # Vanity mode: the provider's own domain, shared mail user and DNS zone owner
    vanity_domain: str | None = None
    vanity_mail_user: str | None = None
    vanity_dns_user: str | None = None
    vanity_mail_server: str | None = None  # server_id holding the shared mail user
    # WHMCS tickets for failed operations: the WHMCS API (calls go to <url>/includes/api.php)
    # and the ticket defaults, until staff change them in the runtime settings
    whmcs_url: str | None = None
    whmcs_identifier: str | None = None
    whmcs_secret: str | None = None
    tickets_enabled: bool = False
    tickets_department_id: int = 1
    tickets_priority: str = "Medium"
    # "text" (a person at a terminal) or "json" (one object per line, for a log shipper)
    log_format: str = "text"
    # the SSL pre-flight: the resolvers that find a zone's authoritative servers (ip[:port],…;
    # unset: the system's), the port those servers are asked at, extra roots a served
    # certificate may chain to (a PEM file), and the ports a node is reached at for the
    # HTTP-01 self-check and the TLS probe (tests and the demo move them)
    dns_resolvers: str | None = None
    dns_authoritative_port: int = 53
    trusted_roots: str | None = None
    http01_port: int = 80
    tls_probe_port: int = 443
    # the ACME CA certificates are ordered from (Let's Encrypt's staging directory is
    # STAGING_ACME_DIRECTORY), the contact address it may mail, and a PEM file trusted for
    # reaching it over HTTPS (a private test CA such as pebble's)
    acme_directory: str = LETS_ENCRYPT_DIRECTORY
    acme_email: str | None = None
    acme_ca_bundle: str | None = None
    # the ACME profile orders ask for (Let's Encrypt's "classic", "tlsserver", "shortlived");
    # unset: the CA's default. A profile the CA does not offer fails the order, with its reason
    acme_profile: str | None = None
    # automatic SSL: "off" (no ssl steps, no ssl queues, no SSL desk) or "auto" (deploys end
    # with the ssl steps and ``handler ssl`` runs the desk); how often the desk looks for due
    # certificates (``cron.ssl``), and how many it checks at once
    ssl: str = "off"
    cron_ssl_s: float = 5.0
    # how often custom certificates are looked at for an expiry warning they are owed (each
    # of 30/14/7/1 days is recorded once, so a missed look only comes late, never twice)
    cron_ssl_expiry_s: float = 3600.0
    ssl_concurrency: int = 8
    # usage sync (ops/services/usage.py): how often the desk's tick looks for nodes due a sync
    # (``cron.usage``); a node is due one ``usage_period_s`` after its last listing, its
    # retry after a failure comes after ``usage_retry_s`` doubling up to the period; a refresh
    # joins a listing made within ``usage_fresh_s``, or a sync queued or running for less than
    # ``usage_lease_s`` (a longer one died with its process)
    cron_usage_s: float = 30.0
    usage_period_s: float = 3600.0
    usage_fresh_s: int = 60
    usage_retry_s: float = 30.0
    usage_lease_s: float = 300.0

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings, or a SettingsError naming every problem with them."""
        settings, problems = cls.read(environ)
        if problems:
            raise SettingsError(*problems)
        return settings

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
        """The settings and every problem with them; a value that cannot be read is left at
        its default, so what depends on the rest can still be checked (``load`` raises)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        config_path = environ.get(PREFIX + "CONFIG")
        if config_path is None and Path("hostwright.toml").exists():
            config_path = "hostwright.toml"
        if config_path:
            try:
                values.update(tomllib.loads(Path(config_path).read_text()))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                problems.append(f"cannot read settings file {config_path}: {exc}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            problems.append(f"unknown setting(s) in {config_path}: {', '.join(unknown)}")
            for name in unknown:
                del values[name]
        for name in known:
            if PREFIX + name.upper() in environ:
                values[name] = environ[PREFIX + name.upper()]
        for name in (
            "prefetch",
            "dead_letter_after",
            "relay_batch",
            "projection_batch",
            "retry_max_attempts",
            "dispatch_batch",
            "handler_concurrency",
            "tickets_department_id",
            "ssl_concurrency",
        ):
            _convert(values, name, _positive_int, problems)
        _convert(values, "tickets_enabled", _flag, problems)
        _convert(values, "usage_fresh_s", _whole_seconds, problems)
        for name in ("dns_authoritative_port", "http01_port", "tls_probe_port"):
            _convert(values, name, _port, problems)
        for name in (
            "retry_initial_backoff_s",
            "retry_max_backoff_s",
            "lease_s",
            "heartbeat_s",
            "command_timeout_s",
            "clean_completed_after_s",
            "stuck_after_s",
            "cron_retries_s",
            "cron_stuck_s",
            "cron_terminations_s",
            "cron_tickets_s",
            "cron_inbox_s",
            "cron_ssl_s",
            "cron_ssl_expiry_s",
            "cron_usage_s",
            "usage_period_s",
            "usage_retry_s",
            "usage_lease_s",
            "inbox_retention_hours",
            "stop_grace_s",
        ):
            _convert(values, name, _positive_float, problems)
        settings = cls(**values)
        return settings, problems + settings.problems()

    def __repr__(self) -> str:
        """Every setting but the secrets: a field named for a token or a secret shows as
        ``<hidden>``, and a URL's password as ``***``."""
        shown = ", ".join(f"{f.name}={_shown(f.name, getattr(self, f.name))}" for f in fields(self))
        return f"Settings({shown})"

    def check(self) -> None:
        """Raises a SettingsError naming every problem ``problems`` finds."""
        problems = self.problems()
        if problems:
            raise SettingsError(*problems)

    def problems(self) -> list[str]:
        """Every value that is wrong, one line each (each names its variable)."""
        found: list[str] = []
        if not self.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            found.append("HOSTWRIGHT_DATABASE_URL must be sqlite:///path or postgresql://…")
        if self.amqp_url is not None and not self.amqp_url.startswith(("amqp://", "amqps://")):
            found.append("HOSTWRIGHT_AMQP_URL must be amqp://… or amqps://…")
        if listen_problem(self.listen):
            found.append(f"HOSTWRIGHT_LISTEN {listen_problem(self.listen)}")
        if self.public_url is not None and not _public_url(self.public_url):
            found.append(
                "HOSTWRIGHT_PUBLIC_URL must be http(s)://host[:port], with no path, query or "
                "credentials (the base of client links; the screens are served at the root)"
            )
        if not self.view_prefix.replace("_", "").isalnum():
            found.append("HOSTWRIGHT_VIEW_PREFIX must be letters, digits and '_'")
        if self.log_format not in ("text", "json"):
            found.append("HOSTWRIGHT_LOG_FORMAT must be text or json")
        found += self._secret_key_problems()
        found += self._ssl_problems()
        found += self._whmcs_problems()
        found += self._token_problems()
        return found

    def _token_problems(self) -> Iterator[str]:
        tokens = {
            "HOSTWRIGHT_API_TOKEN": self.api_token,
            "HOSTWRIGHT_STAFF_TOKEN": self.staff_token,
        }
        for variable, token in tokens.items():
            if token is not None and len(token) < MIN_TOKEN_LENGTH:
                yield (
                    f"{variable} must be at least {MIN_TOKEN_LENGTH} characters "
                    "(make one with `openssl rand -hex 24`)"
                )
        if self.api_token is not None and self.api_token == self.staff_token:
            yield "HOSTWRIGHT_STAFF_TOKEN must differ from HOSTWRIGHT_API_TOKEN"

    def _secret_key_problems(self) -> Iterator[str]:
        if self.secret_key is not None and len(self.secret_key) < MIN_SECRET_KEY_CHARS:
            yield (
                f"HOSTWRIGHT_SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters "
                "(e.g. openssl rand -hex 32)"
            )
        if self.retired_secret_keys and not self.secret_key:
            yield "HOSTWRIGHT_OLD_SECRET_KEYS needs HOSTWRIGHT_SECRET_KEY (the key that seals now)"
        if any(len(key) < MIN_SECRET_KEY_CHARS for key in self.retired_secret_keys):
            yield (
                f"every key in HOSTWRIGHT_OLD_SECRET_KEYS must be at least "
                f"{MIN_SECRET_KEY_CHARS} characters"
            )

    def _ssl_problems(self) -> Iterator[str]:
        if self.ssl not in SSL_MODES:
            yield f"HOSTWRIGHT_SSL must be one of {', '.join(SSL_MODES)}, not {self.ssl!r}"
        try:
            resolver_addresses(self.dns_resolvers or "")
        except ValueError as exc:
            yield f"HOSTWRIGHT_DNS_RESOLVERS must be ip[:port],… ({exc})"
        if self.trusted_roots is not None and not Path(self.trusted_roots).is_file():
            yield f"HOSTWRIGHT_TRUSTED_ROOTS names no file: {self.trusted_roots}"
        if not self.acme_directory.startswith("https://"):
            yield "HOSTWRIGHT_ACME_DIRECTORY must be an https:// URL (an ACME directory)"
        if self.acme_email is not None and not _mail_address(self.acme_email):
            yield f"HOSTWRIGHT_ACME_EMAIL is not a mail address: {self.acme_email!r}"
        if self.acme_ca_bundle is not None and not Path(self.acme_ca_bundle).is_file():
            yield f"HOSTWRIGHT_ACME_CA_BUNDLE names no file: {self.acme_ca_bundle}"
        if self.acme_profile is not None and not _PROFILE_NAME.fullmatch(self.acme_profile):
            yield f"HOSTWRIGHT_ACME_PROFILE is not a profile name: {self.acme_profile!r}"

    @property
    def ssl_auto(self) -> bool:
        """Whether automatic SSL is on (``HOSTWRIGHT_SSL=auto``)."""
        return self.ssl == "auto"

    @property
    def dns_resolver_addresses(self) -> list[tuple[str, int]]:
        """``HOSTWRIGHT_DNS_RESOLVERS`` as ``(ip, port)`` pairs; empty: use the system's."""
        return resolver_addresses(self.dns_resolvers or "")

    @property
    def retired_secret_keys(self) -> tuple[str, ...]:
        """The keys of ``HOSTWRIGHT_OLD_SECRET_KEYS``, which unseal but never seal."""
        listed = (self.old_secret_keys or "").split(",")
        return tuple(key.strip() for key in listed if key.strip())

    def _whmcs_problems(self) -> Iterator[str]:
        if self.whmcs_url is not None and not self.whmcs_url.startswith(("http://", "https://")):
            yield "HOSTWRIGHT_WHMCS_URL must be http(s)://… (the WHMCS base URL)"
        elif self.whmcs_url is not None and not _private_channel(self.whmcs_url):
            yield (
                "HOSTWRIGHT_WHMCS_URL must be https://… (every call carries the WHMCS secret); "
                "plain http:// only to this machine (127.0.0.1, ::1, localhost)"
            )
        if self.tickets_priority not in PRIORITIES:
            yield f"HOSTWRIGHT_TICKETS_PRIORITY must be one of {', '.join(PRIORITIES)}"
        api = (self.whmcs_url, self.whmcs_identifier, self.whmcs_secret)
        if self.tickets_enabled and not all(api):
            yield (
                "HOSTWRIGHT_TICKETS_ENABLED needs HOSTWRIGHT_WHMCS_URL, "
                "HOSTWRIGHT_WHMCS_IDENTIFIER and HOSTWRIGHT_WHMCS_SECRET"
            )

    @property
    def stuck_threshold_s(self) -> float:
        """How long a task stays stuck before ``force_fail_stuck`` takes it by default."""
        return 2 * self.lease_s if self.stuck_after_s is None else self.stuck_after_s

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def listen_problem(listen: str) -> str | None:
    """What is wrong with a HOST:PORT to listen on (None: nothing), for the setting and for
    ``demo --listen`` alike."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        return f"must be HOST:PORT, not {listen!r}"
    if int(port) > MAX_PORT:
        return f"has port {port}; a port is 0 to {MAX_PORT}"
    return None


def resolver_addresses(text: str, default_port: int = 53) -> list[tuple[str, int]]:
    """``ip[:port],…`` (``[v6]:port`` for an IPv6 address with a port) as ``(ip, port)``
    pairs; ValueError naming the first item that is not one."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") or str(default_port)
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, str(default_port)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
        if not port.isdigit() or not 0 < int(port) <= MAX_PORT:
            raise ValueError(f"{item!r} has no port from 1 to {MAX_PORT}")
        found.append((host, int(port)))
    return found


def _convert(
    values: dict[str, Any],
    name: str,
    convert: Callable[[str, object], object],
    problems: list[str],
) -> None:
    """Replaces ``values[name]`` by its converted value; a value that does not convert is
    dropped (the default stands) and its problem added to ``problems``."""
    if name not in values:
        return
    try:
        values[name] = convert(PREFIX + name.upper(), values[name])
    except SettingsError as exc:
        problems.extend(exc.problems)
        del values[name]


def _private_channel(url: str) -> bool:
    """HTTPS, or plain HTTP to a loopback address, where no one between can read the call."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mail_address(text: str) -> bool:
    local, at, domain = text.partition("@")
    return bool(local and at and "." in domain and not any(c.isspace() for c in text))


def _shown(name: str, value: object) -> str:
    """A setting as ``repr`` shows it: secrets hidden, a URL without its password."""
    if value is None:
        return "None"
    if "token" in name or "secret" in name:
        return "<hidden>"
    if name.endswith("_url") and isinstance(value, str):
        return repr(_without_password(value))
    return repr(value)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _positive_float(name: str, value: object) -> float:
    try:
        number = float(str(value))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number") from exc
    if not number > 0:
        raise SettingsError(f"{name} must be above 0")
    return number


def _whole_seconds(name: str, value: object) -> int:
    """A whole number of seconds, 0 allowed."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise SettingsError(f"{name} must be a whole number of seconds (0 or more)")
    return int(text)


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false")


def _port(name: str, value: object) -> int:
    number = _positive_int(name, value)
    if number > MAX_PORT:
        raise SettingsError(f"{name} must be a port from 1 to {MAX_PORT}")
    return number


def _positive_int(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a whole number") from exc
    if number < 1:
        raise SettingsError(f"{name} must be at least 1")
    return number


def _public_url(url: str) -> bool:
    """An http(s) origin a path can follow: a host, no path (the pages link to ``/client/…``
    and ``/static/…`` from the root), query, fragment or credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username or parts.password)
        and not any(c.isspace() or c in "<>\"'" for c in url)
    )
