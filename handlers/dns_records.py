"""DNS records as the steps want them and as Hestia lists them, in one comparable form.

``DesiredRecord.parse`` consumes one planner record ``{record, type, value, priority?, ttl?,
replace?}`` and emits a checked record whose ``argv_tail`` is what ``v-add-dns-record`` gets
after USER DOMAIN. ``listed_key`` consumes one entry of ``v-list-dns-records … json`` and emits
the same ``(record, type, priority, value)`` key ``DesiredRecord.key`` has, so "is it there?"
is an equality test. The key undoes what ``v-add-dns-record`` does to a value — strips double
quotes and re-quotes text with blanks or ``;``, adds the trailing dot of NS/CNAME/MX/PTR/SRV,
stores ``'`` as ``%quote%``, keeps DKIM's ``\\;`` — and joins TXT strings that were split at
255 bytes. Long TXT values are passed whole: Hestia splits them into 255-byte strings when it
writes the zone file (``func/domain.sh``), and since ``v-add-dns-record`` strips every double
quote, a value split beforehand would reach the zone with blanks in the middle.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from handlers.step import StepParamsError

FQDN_TYPES = frozenset({"NS", "CNAME", "MX", "PTR", "SRV"})
PRIORITY_TYPES = frozenset({"MX", "SRV"})
TEXT_TYPES = frozenset({"TXT", "SPF"})
RECORD_TYPES = frozenset(
    {"A", "AAAA", "NS", "CNAME", "MX", "TXT", "SRV", "DNSKEY", "KEY", "IPSECKEY", "PTR", "SPF"}
    | {"TLSA", "CAA", "DS"}
)
_RECORD_NAME = re.compile(r"^(?:@|\*|[a-z0-9_*][a-z0-9_.*-]*)$")
_CHUNK_BREAK = re.compile(r'"\s*"')

RecordKey = tuple[str, str, str, str]


def canonical_value(rtype: str, value: str) -> str:
    """The value with Hestia's storage quirks removed, for comparison only."""
    text = value.replace("%quote%", "'").strip()
    if rtype in TEXT_TYPES:
        text = _CHUNK_BREAK.sub("", text).replace("\\;", ";").replace('"', "")
    elif rtype != "CAA":
        text = text.replace('"', "")
    if rtype in FQDN_TYPES:
        text = text.lower()
        if not text.endswith("."):
            text += "."
    elif rtype in ("A", "AAAA"):
        with contextlib.suppress(ValueError):
            text = str(ipaddress.ip_address(text))
    return text


def canonical_priority(rtype: str, priority: object) -> str:
    if rtype not in PRIORITY_TYPES:
        return ""
    # v-add-dns-record takes 10 when no priority is given.
    return str(priority) if priority not in (None, "") else "10"


def listed_key(entry: dict[str, Any]) -> RecordKey:
    rtype = str(entry.get("TYPE", "")).upper()
    return (
        str(entry.get("RECORD", "")).lower(),
        rtype,
        canonical_priority(rtype, entry.get("PRIORITY")),
        canonical_value(rtype, str(entry.get("VALUE", ""))),
    )


@dataclass(frozen=True)
class DesiredRecord:
    record: str
    type: str
    value: str
    priority: str
    ttl: str
    replace: bool  # other values of the same name and type are removed

    @classmethod
    def parse(cls, raw: object) -> DesiredRecord:
        if not isinstance(raw, dict):
            raise StepParamsError("a DNS record must be an object {record, type, value, ...}")
        record = _field(raw, "record").lower()
        rtype = _field(raw, "type").upper()
        value = _field(raw, "value")
        if not _RECORD_NAME.fullmatch(record):
            raise StepParamsError(f"DNS record name {record!r} is not valid")
        if rtype not in RECORD_TYPES:
            raise StepParamsError(f"DNS record type {rtype!r} is not one Hestia knows")
        if rtype in TEXT_TYPES:
            # One logical string; Hestia splits long ones itself (see the module docstring).
            value = canonical_value(rtype, value)
        priority = raw.get("priority")
        if priority is not None and (
            isinstance(priority, bool) or not re.fullmatch(r"[0-9]{1,5}", str(priority))
        ):
            raise StepParamsError(f"DNS record priority {priority!r} must be a number")
        ttl = raw.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not re.fullmatch(r"[0-9]{1,7}", str(ttl))):
            raise StepParamsError(f"DNS record ttl {ttl!r} must be a number of seconds")
        replace = raw.get("replace", False)
        if not isinstance(replace, bool):
            raise StepParamsError("DNS record 'replace' must be true or false")
        return cls(
            record,
            rtype,
            value,
            "" if priority is None else str(priority),
            "" if ttl is None else str(ttl),
            replace,
        )

    @property
    def key(self) -> RecordKey:
        return (
            self.record,
            self.type,
            canonical_priority(self.type, self.priority),
            canonical_value(self.type, self.value),
        )

    @property
    def argv_tail(self) -> list[str]:
        """RECORD TYPE VALUE [PRIORITY] [ID] [RESTART] [TTL], trailing empties left out."""
        tail = [self.record, self.type, self.value]
        if self.ttl:
            return [*tail, self.priority, "", "", self.ttl]
        return [*tail, self.priority] if self.priority else tail

    def describe(self) -> str:
        priority = f" {self.priority}" if self.priority else ""
        value = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        return f"{self.record} {self.type}{priority} {value}"


def _field(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value or "\n" in value or "\x00" in value:
        raise StepParamsError(f"DNS record {name!r} must be a non-empty one-line string")
    return value
