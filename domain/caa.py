"""Whether a name's CAA records let a CA issue for it (RFC 8659), as a pure rule.

``caa_permits`` consumes the CAA record sets found walking up from a name (closest first: the
name, then its parent, …; each ``(owner, records)``), the CA's CAA identities (from its ACME
directory's ``meta.caaIdentities``) and whether the name is a wildcard, and emits ``None`` when
the CA may issue or a reason a person reads when it may not. The relevant set is the first
non-empty one; no CAA anywhere lets every CA issue.

Parameters after the issuer (RFC 8657's ``accounturi``, ``validationmethods``) are not
weighed: a record naming the CA is taken as permitting it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CRITICAL = 0x80
# Tags a CA understands (RFC 8659, 8657, 9495 and the BRs' contact tags); a critical property
# with any other tag forbids issuance.
KNOWN_TAGS = frozenset(
    {"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}
)


@dataclass(frozen=True)
class CaaRecord:
    """One CAA resource record: its flags byte, its tag and its value, as published."""

    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        return bool(self.flags & CRITICAL)

    @property
    def issuer(self) -> str:
        """The issuer domain name of an ``issue``/``issuewild`` value; empty means no CA."""
        return self.value.split(";", 1)[0].strip().rstrip(".").lower()


def caa_permits(
    records_closest_first: Sequence[tuple[str, Sequence[CaaRecord]]],
    issuer_ids: Iterable[str],
    wildcard: bool,
) -> str | None:
    """``None`` if a CA known by ``issuer_ids`` may issue for the name, else why not."""
    relevant = next(((owner, recs) for owner, recs in records_closest_first if recs), None)
    if relevant is None:
        return None
    owner, records = relevant
    for record in records:
        if record.critical and record.tag.lower() not in KNOWN_TAGS:
            return (
                f"CAA at {owner} has a critical {record.tag!r} property this check does not "
                "know, so no CA may issue"
            )
    wild = [r for r in records if r.tag.lower() == "issuewild"]
    tag = "issuewild" if wildcard and wild else "issue"
    chosen = wild if tag == "issuewild" else [r for r in records if r.tag.lower() == "issue"]
    if not chosen:
        return None
    ids = {i.rstrip(".").lower() for i in issuer_ids}
    allowed = sorted({r.issuer for r in chosen if r.issuer})
    if ids & set(allowed):
        return None
    shown = ", ".join(allowed) if allowed else "no CA"
    which = " for wildcards" if tag == "issuewild" else ""
    if not ids:
        return (
            f"CAA {tag} at {owner} allows {shown}{which}, and this CA publishes no CAA "
            "identity to match"
        )
    return f"CAA {tag} at {owner} allows {shown}{which}, not {', '.join(sorted(ids))}"
