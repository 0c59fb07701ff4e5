"""The hosting plan a service is sold with: the Hestia package and its quotas.

A plan arrives from WHMCS as JSON; ``HostingPlan.parse`` types and bounds every field and
refuses anything it does not know, so a typo in WHMCS configuration is an error, not a
silently ignored limit; a missing or empty plan is refused too (``plan is required``).
``None`` means unlimited. In Hestia's terms: ``PACKAGE_KEYS`` names the package key each
limit goes to, ``PACKAGE_DEFAULTS`` is the package a plan asks for where it sets nothing,
and ``LIMIT_KEYS`` are the package keys that limit what a user may hold (Hestia copies them
into the user); the handlers send and check exactly these.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from domain.errors import InvalidInput

_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PHP_VERSION = re.compile(r"^[5-9]\.[0-9]$")
UNLIMITED = "unlimited"

# Every key of a Hestia package, in the order Hestia writes a package file, with what a plan
# asks for when it leaves the key unset. A limit the plan does not set is no limit; the rest
# are what a fresh Hestia gives its own default package, so a plan changes only its limits.
PACKAGE_DEFAULTS: dict[str, str] = {
    "WEB_TEMPLATE": "default",
    "PROXY_TEMPLATE": "default",
    "BACKEND_TEMPLATE": "default",
    "DNS_TEMPLATE": "default",
    "WEB_DOMAINS": UNLIMITED,
    "WEB_ALIASES": UNLIMITED,
    "DNS_DOMAINS": UNLIMITED,
    "DNS_RECORDS": UNLIMITED,
    "MAIL_DOMAINS": UNLIMITED,
    "MAIL_ACCOUNTS": UNLIMITED,
    "RATE_LIMIT": "200",
    "DATABASES": UNLIMITED,
    "CRON_JOBS": UNLIMITED,
    "DISK_QUOTA": UNLIMITED,
    "CPU_QUOTA": UNLIMITED,
    "CPU_QUOTA_PERIOD": UNLIMITED,
    "MEMORY_LIMIT": UNLIMITED,
    "SWAP_LIMIT": UNLIMITED,
    "BANDWIDTH": UNLIMITED,
    "NS": "ns1.domain.tld,ns2.domain.tld",
    "SHELL": "nologin",
    "BACKUPS": "1",
    "BACKUPS_INCREMENTAL": "no",
}
# HostingPlan field -> the Hestia package key that carries it (None = unlimited, passed on so)
PACKAGE_KEYS = {
    "disk_mb": "DISK_QUOTA",
    "bandwidth_mb": "BANDWIDTH",
    "web_domains": "WEB_DOMAINS",
    "web_aliases": "WEB_ALIASES",
    "mail_domains": "MAIL_DOMAINS",
    "mail_accounts": "MAIL_ACCOUNTS",
    "databases": "DATABASES",
    "dns_domains": "DNS_DOMAINS",
    "cron_jobs": "CRON_JOBS",
}
# The counted limits of a package, in Hestia's order: the plan's, and DNS_RECORDS, which a plan
# leaves unlimited but a package may set. A user holds its own copy of them, which drifts from
# its package when the package changes; that is why they are compared user against package.
LIMIT_KEYS = tuple(
    key for key in PACKAGE_DEFAULTS if key in {*PACKAGE_KEYS.values(), "DNS_RECORDS"}
)

# field -> inclusive upper bound; the unit is in the name
_BOUNDED_FIELDS: dict[str, int] = {
    "disk_mb": 100_000_000,
    "bandwidth_mb": 1_000_000_000,
    "web_domains": 100_000,
    "web_aliases": 100_000,
    "mail_domains": 100_000,
    "mail_accounts": 1_000_000,
    "databases": 100_000,
    "dns_domains": 100_000,
    "cron_jobs": 10_000,
    "mailbox_quota_mb": 1_000_000,  # a vanity service's one mailbox on the provider's domain
}


# the fields a plan may carry, as WHMCS sends them (see docs/api.md, "The plan")
PLAN_FIELDS = ("package", *_BOUNDED_FIELDS, "php_version")


@dataclass(frozen=True)
class HostingPlan:
    package: str = "default"
    disk_mb: int | None = None
    bandwidth_mb: int | None = None
    web_domains: int | None = None
    web_aliases: int | None = None
    mail_domains: int | None = None
    mail_accounts: int | None = None
    databases: int | None = None
    dns_domains: int | None = None
    cron_jobs: int | None = None
    mailbox_quota_mb: int | None = None
    php_version: str | None = None

    @classmethod
    def parse(cls, raw: object) -> HostingPlan:
        """Builds a plan from a JSON object, or raises InvalidInput naming the bad field.

        A missing (None) or empty plan is refused rather than taken as ``default`` with no
        limit: WHMCS always knows the product's plan, so its absence is a configuration
        error that would otherwise sell an unlimited service."""
        known = {"package", "php_version", *_BOUNDED_FIELDS}
        if raw is None or raw == {}:
            raise InvalidInput(
                "plan is required: the product's plan, a JSON object with at least one of "
                f"{', '.join(PLAN_FIELDS)}"
            )
        if not isinstance(raw, dict):
            raise InvalidInput("plan must be a JSON object")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInput(f"plan has unknown field(s): {', '.join(map(str, unknown))}")
        values: dict[str, Any] = {}
        package = raw.get("package", "default")
        if not isinstance(package, str) or not _PACKAGE.fullmatch(package):
            raise InvalidInput(
                "plan.package must be 1-64 characters of letters, digits, '_', '.' or '-'"
            )
        values["package"] = package
        php = raw.get("php_version")
        if php is not None and (not isinstance(php, str) or not _PHP_VERSION.fullmatch(php)):
            raise InvalidInput("plan.php_version must look like '8.2'")
        values["php_version"] = php
        for name, upper in _BOUNDED_FIELDS.items():
            values[name] = _bounded(name, raw.get(name), upper)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _bounded(name: str, value: object, upper: int) -> int | None:
    if value is None or value == UNLIMITED:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"plan.{name} must be a whole number or 'unlimited'")
    if not 0 <= value <= upper:
        raise InvalidInput(f"plan.{name} must be between 0 and {upper}")
    return value
