"""Let's Encrypt's rate limits as a model, so an order the CA would refuse is never sent.

Consumes an ``OrderIntent`` (its names, their registered domains, an ARI ``replaces``), the
account, a bucket's theoretical arrival time (TAT) and the time passed in; emits the buckets
an order spends from (``keys_for``), a ``Spend`` per bucket (GCRA: allowed or not, the new
TAT, when a token is back), and registered domains by the Public Suffix List
(``PublicSuffixRules`` parses the list's text; reading the file is an adapter's job).

The limits are Let's Encrypt's token buckets (letsencrypt.org/docs/rate-limits): a bucket of
``capacity`` tokens refilled one every ``period / capacity``. GCRA keeps one time per bucket:
the TAT, when the bucket would be full again. A spend is allowed while the new TAT is no more
than ``period`` ahead; otherwise ``retry_at`` is when it will be.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from domain.ssl_types import Admission, OrderIntent


@dataclass(frozen=True)
class Limit:
    name: str
    capacity: int
    period: timedelta

    @property
    def interval(self) -> timedelta:
        """How often one token comes back."""
        return self.period / self.capacity


ORDERS_PER_ACCOUNT = Limit("new orders per account", 300, timedelta(hours=3))
CERTIFICATES_PER_DOMAIN = Limit("certificates per registered domain", 50, timedelta(days=7))
SAME_NAMES = Limit("certificates per exact set of names", 5, timedelta(days=7))
AUTHZ_FAILURES = Limit("failed authorizations per name", 5, timedelta(hours=1))
LETS_ENCRYPT_LIMITS = (ORDERS_PER_ACCOUNT, CERTIFICATES_PER_DOMAIN, SAME_NAMES, AUTHZ_FAILURES)
LIMITS_BY_NAME = {limit.name: limit for limit in LETS_ENCRYPT_LIMITS}


@dataclass(frozen=True)
class Spend:
    """A bucket's answer to one spend: ``tat`` is its new TAT when allowed (else unchanged)."""

    allowed: bool
    tat: datetime
    retry_at: datetime | None = None


def spend(tat: datetime | None, limit: Limit, now: datetime, cost: int = 1) -> Spend:
    """GCRA: spends ``cost`` tokens from a bucket whose TAT is ``tat`` (None: never used).
    ``cost`` 0 asks whether one token is there without taking it (the check an order makes
    of its names' failed-authorization buckets)."""
    base = now if tat is None or tat < now else tat
    new_tat = base + limit.interval * max(cost, 1)
    allowed_from = new_tat - limit.period
    if now < allowed_from:
        return Spend(False, base, retry_at=allowed_from)
    return Spend(True, base if cost == 0 else new_tat)


def exhausted_until(until: datetime, limit: Limit) -> datetime:
    """The TAT of a bucket that has no token before ``until`` (the CA said so: a 429 with
    its Retry-After), and one from then on."""
    return until + limit.period - limit.interval


@dataclass(frozen=True)
class BucketKey:
    """One bucket an order spends from: its ``key`` (stable text) and the limit it counts."""

    key: str
    limit: Limit


def keys_for(intent: OrderIntent, account: str) -> list[BucketKey]:
    """The buckets a new order spends from: the account's orders, each registered domain's
    certificates and the exact set of names. None for an ARI renewal that carries
    ``replaces``: Let's Encrypt exempts those from every limit (the caller sends ``replaces``
    only once the renewal window has opened: before it, no exemption)."""
    if intent.replaces:
        return []
    names = ",".join(sorted({name.lower() for name in intent.names}))
    digest = hashlib.sha256(names.encode()).hexdigest()[:32]
    return [
        BucketKey(f"orders/{account}", ORDERS_PER_ACCOUNT),
        *(
            BucketKey(f"domain/{domain}", CERTIFICATES_PER_DOMAIN)
            for domain in sorted(set(intent.registered_domains))
        ),
        BucketKey(f"names/{digest}", SAME_NAMES),
    ]


def authz_keys_for(names: Iterable[str], account: str) -> list[BucketKey]:
    """The failed-authorization buckets of names (per name and account), where a failed
    authorization is counted."""
    return [
        BucketKey(f"authz/{account}/{name}", AUTHZ_FAILURES)
        for name in sorted({name.lower().removeprefix("*.") for name in names})
    ]


def looks_for(intent: OrderIntent, account: str) -> list[BucketKey]:
    """The buckets a new order needs a token in without spending it: its names'
    failed-authorization buckets. None for an ARI renewal with ``replaces`` (exempt from
    this limit too, as from every other)."""
    return [] if intent.replaces else authz_keys_for(intent.names, account)


def keys_emptied_by_rate_limit(intent: OrderIntent, account: str) -> list[BucketKey]:
    """The buckets a 429 for this order empties until its Retry-After: the order's own
    (registered domains, exact set of names), not the account's. A 429 names one limit, and
    an account-wide freeze would be met, and frozen for, by each certificate in turn."""
    return [
        key
        for key in keys_for(replace(intent, replaces=None), account)
        if key.limit is not ORDERS_PER_ACCOUNT
    ]


@dataclass(frozen=True)
class AdmissionDecision:
    """An order's admission and, when allowed, the new TAT of every bucket it spent from."""

    admission: Admission
    spent: Mapping[str, datetime] = field(default_factory=dict)


def decide_admission(
    buckets: Iterable[BucketKey],
    checked: Iterable[BucketKey],
    tats: Mapping[str, datetime | None],
    now: datetime,
) -> AdmissionDecision:
    """Spends one token from each of ``buckets`` and looks (without spending) for one in each
    of ``checked``, all or nothing: refused when any is empty, with the limits that refused
    and the moment all of them allow it again."""
    spent: dict[str, datetime] = {}
    refused: list[tuple[Limit, datetime]] = []
    for bucket, cost in [*((b, 1) for b in buckets), *((b, 0) for b in checked)]:
        answer = spend(tats.get(bucket.key), bucket.limit, now, cost)
        if not answer.allowed:
            assert answer.retry_at is not None
            refused.append((bucket.limit, answer.retry_at))
        elif cost:
            spent[bucket.key] = answer.tat
    if refused:
        retry_at = max(at for _, at in refused)
        limits = ", ".join(dict.fromkeys(limit_text(limit) for limit, _ in refused))
        reason = (
            f"Let's Encrypt's limit of {limits} is reached; "
            f"next try at {retry_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
        return AdmissionDecision(Admission(False, reason, retry_at))
    return AdmissionDecision(Admission(True), spent)


def limit_text(limit: Limit) -> str:
    """``50 certificates per registered domain every 7 days``."""
    hours = limit.period / timedelta(hours=1)
    if hours % 24 == 0:
        every = f"{limit.period.days} days"
    else:
        every = "hour" if hours == 1 else f"{hours:g} hours"
    return f"{limit.capacity} {limit.name} every {every}"


@dataclass(frozen=True)
class PublicSuffixRules:
    """The Public Suffix List's rules: plain, wildcard (``*.ck``, stored as ``ck``) and
    exception (``!www.ck``, stored as ``www.ck``), each also in its punycode form, so a name
    in either form finds its rule."""

    plain: frozenset[str] = field(default_factory=frozenset)
    wildcards: frozenset[str] = field(default_factory=frozenset)
    exceptions: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> PublicSuffixRules:
        plain: set[str] = set()
        wildcards: set[str] = set()
        exceptions: set[str] = set()
        for line in text.splitlines():
            words = line.strip().split()
            if not words or words[0].startswith("//"):
                continue
            rule = words[0].lower()
            target = plain
            if rule.startswith("!"):
                rule, target = rule[1:], exceptions
            elif rule.startswith("*."):
                rule, target = rule[2:], wildcards
            target.update(_both_forms(rule))
        return cls(frozenset(plain), frozenset(wildcards), frozenset(exceptions))

    def public_suffix_length(self, labels: list[str]) -> int:
        """How many trailing labels form the public suffix (the longest matching rule, an
        exception winning; an unlisted TLD is a suffix of its own: the ``*`` default rule)."""
        for start in range(len(labels)):
            suffix = ".".join(labels[start:])
            if suffix in self.exceptions:
                return len(labels) - start - 1
            if suffix in self.plain:
                return len(labels) - start
            if start + 1 < len(labels) and ".".join(labels[start + 1 :]) in self.wildcards:
                return len(labels) - start
        return 1


def registered_domain(name: str, rules: PublicSuffixRules) -> str | None:
    """The registered domain (public suffix plus one label) of ``name``, lower case; None
    when ``name`` is itself a public suffix or is not a name (empty, a leading dot, an empty
    label). A wildcard's ``*.`` is dropped first."""
    name = name.lower().removeprefix("*.").removesuffix(".")
    labels = name.split(".")
    if not name or any(not label for label in labels):
        return None
    suffix = rules.public_suffix_length(labels)
    if suffix >= len(labels):
        return None
    return ".".join(labels[-(suffix + 1) :])


def _both_forms(rule: str) -> set[str]:
    forms = {rule}
    # a label IDNA 2003 cannot encode is matched in its Unicode form only
    with contextlib.suppress(UnicodeError):
        forms.add(".".join(label.encode("idna").decode("ascii") for label in rule.split(".")))
    return forms
