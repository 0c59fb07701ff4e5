"""Validation of the names that end up on nodes: domains, DNS labels, Hestia usernames.

Everything here is strict on purpose: these strings later travel as argv to Hestia's
``v-*`` commands and into DNS zones, so only the characters those accept get through.
"""

from __future__ import annotations

import re

from domain.errors import InvalidInput

MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_USERNAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}[a-z0-9]$")
RESERVED_USERNAMES = frozenset(
    {"root", "admin", "hestia", "hestiaweb", "nobody", "www-data", "mail", "bind", "daemon"}
)


def normalise_domain(raw: object) -> str:
    """Returns the domain as lowercase ASCII (IDN labels in punycode), or raises InvalidInput."""
    if not isinstance(raw, str) or not raw:
        raise InvalidInput("domain must be a non-empty string")
    text = raw.strip().lower()
    if text != raw.lower() or any(ch.isspace() for ch in text):
        raise InvalidInput(f"domain {raw!r} contains white space")
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    if len(labels) < 2:
        raise InvalidInput(f"domain {raw!r} needs at least two labels, like example.com")
    ascii_labels = [_to_ascii_label(label, raw) for label in labels]
    domain = ".".join(ascii_labels)
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise InvalidInput(f"domain is {len(domain)} characters long; the limit is 253")
    if ascii_labels[-1].isdigit():
        raise InvalidInput(f"domain {raw!r} has a numeric top-level label")
    return domain


def validate_label(raw: object, what: str = "label") -> str:
    """Returns one DNS label (lowercase, punycode for IDN), or raises InvalidInput."""
    if not isinstance(raw, str) or not raw:
        raise InvalidInput(f"{what} must be a non-empty string")
    return _to_ascii_label(raw.lower(), raw, what=what)


def validate_username(raw: object) -> str:
    """Returns a Hestia-safe username (2-32 chars, a-z 0-9 _ -, starting with a letter)."""
    if not isinstance(raw, str):
        raise InvalidInput("username must be a string")
    if not _USERNAME.fullmatch(raw):
        raise InvalidInput(
            f"username {raw!r} is not valid: 2 to 32 characters, lowercase letters, digits, "
            "'_' or '-', starting with a letter and ending with a letter or digit"
        )
    if raw in RESERVED_USERNAMES:
        raise InvalidInput(f"username {raw!r} is reserved")
    return raw


def _to_ascii_label(label: str, raw: str, what: str = "domain") -> str:
    if not label:
        raise InvalidInput(f"{what} {raw!r} has an empty label")
    if not label.isascii():
        label = _punycode(label, raw, what)
    elif label.startswith("xn--"):
        _check_punycode(label, raw, what)
    elif label[2:4] == "--":
        raise InvalidInput(f"{what} {raw!r} has '--' in the third and fourth place of a label")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidInput(f"{what} {raw!r} has a label longer than 63 characters")
    if not _LABEL.fullmatch(label):
        raise InvalidInput(
            f"{what} {raw!r} is not valid: labels use a-z, 0-9 and '-', "
            "and do not start or end with '-'"
        )
    return label


def _punycode(label: str, raw: str, what: str) -> str:
    """IDN label → xn--…, refusing labels IDNA would silently change (ß→ss, zero-width…)."""
    try:
        ascii_label = label.encode("idna").decode("ascii")
        round_trip = ascii_label.encode("ascii").decode("idna")
    except UnicodeError as exc:
        raise InvalidInput(f"{what} {raw!r} is not a valid internationalised name") from exc
    if round_trip != label:
        raise InvalidInput(
            f"{what} {raw!r} would be changed by IDNA conversion; send the exact name"
        )
    return ascii_label


def _check_punycode(label: str, raw: str, what: str) -> None:
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError as exc:
        raise InvalidInput(f"{what} {raw!r} has an invalid punycode label") from exc
    if decoded.isascii():
        raise InvalidInput(f"{what} {raw!r} has an invalid punycode label")
