"""SSL's rules as pure functions: which names a certificate needs, when to renew it, when to
look at it next, when to freeze it, whether CAA lets the CA issue, which expiry warnings are due.

Consumes plain values (a role and domain, ``CertificateFacts``, an ARI window, ``SslCadence``,
CAA record sets, the time passed in) and emits names, times and reasons; never a clock read,
never ``random``. Where a choice must be spread (renewal moments) it is a fraction taken from
a SHA-256 of the certificate's key and serial, so a replay of the same history chooses the
same moment, and 10 000 certificates issued in one hour renew over days, not in one hour.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import InvalidInput
from domain.ssl_types import CaaSet, CertificateFacts, SslCadence

ROLES = ("web", "mail", "wildcard")
SHORT_LIFETIME = timedelta(days=10)
EXPIRY_THRESHOLDS_DAYS = (30, 14, 7, 1)
# RFC 8659 §4 plus the tags CAs (Let's Encrypt among them) know: a critical one of these is
# not a reason to refuse
KNOWN_CAA_TAGS = frozenset(
    {"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}
)


@dataclass(frozen=True)
class AriWindow:
    """The renewal window a CA suggests (ACME Renewal Information, RFC 9773)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInput("an ARI window ends before it starts")


def names_for(role: str, domain: str, aliases: Iterable[str] = ()) -> tuple[str, ...]:
    """The names a role's certificate covers, lower case, each once, in this order: web is
    the domain, ``www.`` and the aliases; mail is ``mail.`` and ``webmail.``; wildcard (the
    vanity services' shared certificate) is ``*.<provider domain>``."""
    domain = domain.lower().rstrip(".")
    if role == "web":
        names = [domain, f"www.{domain}", *(alias.lower().rstrip(".") for alias in aliases)]
    elif role == "mail":
        names = [f"mail.{domain}", f"webmail.{domain}"]
    elif role == "wildcard":
        names = [f"*.{domain}"]
    else:
        raise InvalidInput(f"no certificate role {role!r}; the roles are {', '.join(ROLES)}")
    return tuple(dict.fromkeys(names))


def covers(cert_names: Iterable[str], name: str) -> bool:
    """Whether a certificate for ``cert_names`` is valid for ``name``: the same name, or a
    wildcard standing for exactly one leftmost label (``*.p`` covers ``a.p``, neither ``p``
    nor ``a.b.p``)."""
    name = name.lower().rstrip(".")
    for cert_name in cert_names:
        cert_name = cert_name.lower().rstrip(".")
        if cert_name == name:
            return True
        if cert_name.startswith("*."):
            label, _, parent = name.partition(".")
            if label and label != "*" and parent == cert_name[2:]:
                return True
    return False


def spread_fraction(cert_key: str, serial: str) -> float:
    """A number in [0, 1) fixed by the certificate: where in its window it renews."""
    digest = hashlib.sha256(f"{cert_key}|{serial}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_at(
    facts: CertificateFacts, cert_key: str, ari: AriWindow | None, now: datetime
) -> datetime:
    """When to renew. With ARI, a point inside the CA's window (RFC 9773 asks for a random
    one; ours is the certificate's fixed fraction), or ``now`` once that point has passed.
    Without it, a point between half and a third of the lifetime left; for a certificate
    under 10 days, between two thirds and half left (the latest moment is what the issue
    names: ⅓ left, ½ for short-lived ones). Never before ``now``."""
    fraction = spread_fraction(cert_key, facts.serial)
    if ari is not None:
        point = ari.start + (ari.end - ari.start) * fraction
    else:
        lifetime = facts.lifetime
        latest_left = lifetime / 2 if lifetime < SHORT_LIFETIME else lifetime / 3
        earliest_left = latest_left + lifetime / 6
        point = facts.not_after - earliest_left + (earliest_left - latest_left) * fraction
    return max(point, now)


def in_renewal_window(facts: CertificateFacts, now: datetime) -> bool:
    """Whether a certificate is old enough that it should be replaced rather than kept
    (the TLS probe adopts only one that is not): past the earliest fallback point."""
    lifetime = facts.lifetime
    latest_left = lifetime / 2 if lifetime < SHORT_LIFETIME else lifetime / 3
    return now >= facts.not_after - (latest_left + lifetime / 6)


def next_check(
    now: datetime,
    cadence: SslCadence,
    *,
    fast_left: int,
    issued: bool,
    renew_at: datetime | None = None,
    poll_at: datetime | None = None,
) -> datetime:
    """When a certificate is looked at next: every ``fast_interval_s`` while fast attempts
    are left, every ``recheck_interval_s`` while it has no certificate, and once issued at
    its renewal moment or ARI poll, whichever comes first, but at least every
    ``active_interval_s``. Never before ``now``."""
    if fast_left > 0:
        return now + timedelta(seconds=cadence.fast_interval_s)
    if not issued:
        return now + timedelta(seconds=cadence.recheck_interval_s)
    candidates = [now + timedelta(seconds=cadence.active_interval_s)]
    candidates += [at for at in (renew_at, poll_at) if at is not None]
    return max(now, min(candidates))


def after_failure(failures: int, now: datetime, cadence: SslCadence) -> datetime | None:
    """Until when a name is frozen after ``failures`` failed checks in a row (this one
    counted), or None while it may be tried again at its normal cadence."""
    if failures >= cadence.freeze_after:
        return now + timedelta(seconds=cadence.freeze_s)
    return None


def caa_permits(
    sets_closest_first: Sequence[CaaSet],
    issuer_ids: Collection[str],
    *,
    wildcard: bool,
    account_uri: str | None = None,
    method: str | None = None,
) -> str | None:
    """None when CAA lets a CA known by ``issuer_ids`` (``meta.caaIdentities``) issue for the
    name, else the reason (RFC 8659). The relevant set is the first non-empty one walking up
    from the name; none at all permits any CA. A critical property we do not know refuses.
    A wildcard is checked against ``issuewild`` when the set has one, else ``issue``; a
    name without ``issue`` properties (``iodef`` only) permits any CA. A CA naming no
    identity (pebble) is refused by any set of ``issue`` properties.

    A property naming our CA permits only when its parameters do (RFC 8657): ``accounturi``
    must be ``account_uri`` (our ACME account; None: not known yet, so no match), and
    ``validationmethods`` must list ``method`` (``http-01`` or ``dns-01``, the one we will
    use). Other parameters are ignored; a property whose value does not parse (RFC 8659
    §4.2) permits nothing."""
    relevant = next((caa for caa in sets_closest_first if caa.records), None)
    if relevant is None:
        return None
    for record in relevant.records:
        if record.critical and record.tag.lower() not in KNOWN_CAA_TAGS:
            return (
                f"CAA at {relevant.name} has a critical property {record.tag!r} that no CA "
                "may ignore: issuing is refused"
            )
    tag = "issue"
    if wildcard and any(r.tag.lower() == "issuewild" for r in relevant.records):
        tag = "issuewild"
    properties = [r for r in relevant.records if r.tag.lower() == tag]
    if not properties:
        return None
    values = [parse_issue_value(record.value) for record in properties]
    ours = {identity.lower().rstrip(".") for identity in issuer_ids}
    what = "wildcard certificates" if tag == "issuewild" else "certificates"
    refusals: list[str] = []
    for value in values:
        if value is None or value.issuer not in ours:
            continue
        refusal = _parameters_refuse(value.parameters, account_uri, method)
        if refusal is None:
            return None
        refusals.append(refusal)
    if refusals:
        return f"CAA at {relevant.name} lets this CA issue {what} only {' or '.join(refusals)}"
    named = sorted({value.issuer for value in values if value is not None and value.issuer})
    if not named:
        if any(value is None for value in values):
            return f"CAA at {relevant.name} has {tag} properties that do not parse: none permits"
        return f'CAA at {relevant.name} forbids every CA to issue {what} ({tag} ";")'
    return (
        f"CAA at {relevant.name} allows only {', '.join(named)} to issue {what}, "
        f"not this CA ({', '.join(sorted(ours)) or 'it names no CAA identity'})"
    )


@dataclass(frozen=True)
class IssueValue:
    """An ``issue``/``issuewild`` value: the issuer domain (lower case, no trailing dot;
    empty when it forbids every CA) and its parameters, tag → value."""

    issuer: str
    parameters: dict[str, str]


_LABEL = re.compile(r"[A-Za-z0-9](?:-*[A-Za-z0-9])*")
_PARAMETER_TAG = _LABEL
_PARAMETER_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]*")
_WSP = " \t"


def parse_issue_value(text: str) -> IssueValue | None:
    """RFC 8659 §4.2: ``[issuer-domain-name] [";" [tag "=" value *(";" tag "=" value)]]``
    with optional white space around each part; None when ``text`` does not match (a tag
    given twice included, as it cannot say one thing). A trailing dot on the domain is
    accepted, as CAs do."""
    domain, semicolon, rest = text.partition(";")
    domain = domain.strip(_WSP).rstrip(".")
    if domain and not all(_LABEL.fullmatch(label) for label in domain.split(".")):
        return None
    parameters: dict[str, str] = {}
    if semicolon and rest.strip(_WSP):
        for part in rest.split(";"):
            tag, equals, value = part.partition("=")
            tag, value = tag.strip(_WSP), value.strip(_WSP)
            if not equals or not _PARAMETER_TAG.fullmatch(tag) or tag in parameters:
                return None
            if not _PARAMETER_VALUE.fullmatch(value):
                return None
            parameters[tag] = value
    return IssueValue(domain.lower(), parameters)


def _parameters_refuse(
    parameters: dict[str, str], account_uri: str | None, method: str | None
) -> str | None:
    """Why RFC 8657's parameters keep a property naming our CA from permitting, or None."""
    bound = parameters.get("accounturi")
    if bound is not None and bound != account_uri:
        ours = account_uri or "not registered yet"
        return f"for the ACME account {bound} (ours is {ours})"
    listed = parameters.get("validationmethods")
    if listed is not None:
        methods = listed.split(",")
        if not all(_LABEL.fullmatch(m) for m in methods):
            return f"with validation methods that do not parse ({listed!r})"
        if method not in methods:
            return f"by {', '.join(methods)} (this order would use {method or 'none known'})"
    return None


def expiry_threshold_due(not_after: datetime, warned: Collection[int], now: datetime) -> int | None:
    """The expiry warning owed now (days before ``not_after``: 30, 14, 7, 1), or None. Only
    the nearest threshold reached is owed: a certificate first seen 5 days before it expires
    is warned once at 7, not at 30, 14 and 7 together; and a threshold is never owed twice,
    nor one further off than a threshold already warned."""
    left = not_after - now
    reached = [days for days in EXPIRY_THRESHOLDS_DAYS if left <= timedelta(days=days)]
    if not reached:
        return None
    nearest = min(reached)
    if any(days <= nearest for days in warned):
        return None
    return nearest
