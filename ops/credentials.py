"""The gateway's credentials, from the settings: the environment's two tokens and a tokens file.

Consumes ``HOSTWRIGHT_API_TOKEN`` (the credential named ``whmcs``, scope ``services``),
``HOSTWRIGHT_STAFF_TOKEN`` (``staff``, scope ``staff``) and ``HOSTWRIGHT_TOKENS_FILE``; emits
a ``TokenTable`` (``gateway.credentials``) or raises SettingsError naming the problem.

A tokens file holds one credential a line — its name, its scopes (comma-separated) and the
SHA-256 of its token, never the token:

    # name    scopes   token hash
    grafana   read     sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

Blank lines and lines starting with ``#`` are skipped. A name the system records as its own
actor (``RESERVED_NAMES``: scheduler, pipeline, ...) is refused. ``hostwright token new
--name N --scope S`` makes a token, prints it once, and prints the line to add
(``new_token_lines``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from gateway.credentials import (
    DIGEST_PREFIX,
    MIN_TOKEN_LENGTH,
    SCOPES,
    SERVICES,
    STAFF,
    KnownToken,
    Principal,
    TokenTable,
    known_token,
    token_digest,
)
from ops.settings import Settings, SettingsError

WHMCS_NAME = "whmcs"
STAFF_NAME = "staff"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# names the system records as the actor of its own events ("scheduler" retries failed tasks,
# "pipeline: superseded by a newer run" cancels): no credential may take one, so an audit
# can tell a caller's acts from the system's
RESERVED_NAMES = frozenset({"scheduler", "pipeline", "system", "hostwright"})
_DIGEST = re.compile(rf"^{DIGEST_PREFIX}[0-9a-f]{{64}}$")


def credentials_from(settings: Settings) -> TokenTable:
    """Every credential the settings name; SettingsError for a bad file or a name used twice."""
    entries: list[KnownToken] = []
    if settings.api_token:
        entries.append(known_token(WHMCS_NAME, {SERVICES}, settings.api_token))
    if settings.staff_token:
        entries.append(known_token(STAFF_NAME, {STAFF}, settings.staff_token))
    if settings.tokens_file:
        entries += read_tokens_file(Path(settings.tokens_file))
    try:
        return TokenTable.of(entries)
    except ValueError as exc:
        raise SettingsError(f"credentials: {exc}") from None


def read_tokens_file(path: Path) -> list[KnownToken]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read HOSTWRIGHT_TOKENS_FILE {path}: {exc.strerror}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append(_entry(line))
        except ValueError as exc:
            raise SettingsError(f"{path}, line {number}: {exc}") from None
    return entries


def _entry(line: str) -> KnownToken:
    parts = line.split()
    if len(parts) != 3:
        raise ValueError("a credential is '<name> <scope[,scope]> sha256:<hex>'")
    name, scopes, digest = parts
    _check_name(name)
    return KnownToken(Principal(name, parse_scopes(scopes.split(","))), _digest(digest))


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError("a name is 1-32 characters of a-z, 0-9, '_' or '-', starting with a-z")
    if name in RESERVED_NAMES:
        raise ValueError(
            f"the name {name!r} is reserved: the system records it as the actor of its own "
            f"events (reserved: {', '.join(sorted(RESERVED_NAMES))})"
        )


def parse_scopes(raw: Iterable[str]) -> frozenset[str]:
    scopes = frozenset(raw)
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
            f"scopes are one or more of {', '.join(SCOPES)}"
        )
    return scopes


def _digest(raw: str) -> str:
    if not _DIGEST.fullmatch(raw):
        raise ValueError("the token's hash is 'sha256:' and 64 lowercase hex digits")
    return raw


def new_token_lines(name: str, scopes: Iterable[str]) -> tuple[str, str]:
    """A new random token and the tokens-file line naming it (``ValueError`` for a bad name
    or scope)."""
    _check_name(name)
    chosen = parse_scopes(scopes)
    token = secrets.token_urlsafe(32)  # 43 characters, 256 bits
    assert len(token) >= MIN_TOKEN_LENGTH
    ordered = ",".join(scope for scope in SCOPES if scope in chosen)
    return token, f"{name} {ordered} {token_digest(token)}"
