"""What the ACME client (``handlers/acme_client.py``) answers with: plain values read from the
CA's JSON, and its two failures.

``AcmeProblem`` is the CA saying no (RFC 8555 §6.7): the problem type, its detail, the HTTP
status, ``Retry-After`` (seconds from the answer; a 429 ``rateLimited`` carries one) and the
identifier concerned. ``AcmeUnavailable`` is everything else that went wrong on the way
(network, TLS, an answer that is no ACME): transient, try again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

ERROR_PREFIX = "urn:ietf:params:acme:error:"


class AcmeProblem(Exception):
    """The CA refused: ``type`` is the problem type URN, ``status`` the HTTP status,
    ``retry_after`` seconds from when it answered (None when it gave none)."""

    def __init__(
        self,
        type: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        identifier: str | None = None,
    ) -> None:
        self.type = type
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.identifier = identifier
        super().__init__(str(self))

    def __str__(self) -> str:
        code = self.type.removeprefix(ERROR_PREFIX)
        about = f" for {self.identifier}" if self.identifier else ""
        status = f", HTTP {self.status}" if self.status else ""
        return f"{self.detail or code}{about} ({code}{status})"

    @property
    def code(self) -> str:
        return self.type.removeprefix(ERROR_PREFIX)

    @property
    def rate_limited(self) -> bool:
        return self.type == ERROR_PREFIX + "rateLimited"

    @property
    def already_replaced(self) -> bool:
        return self.type == ERROR_PREFIX + "alreadyReplaced"

    @property
    def malformed(self) -> bool:
        return self.type == ERROR_PREFIX + "malformed"


class AcmeUnavailable(Exception):
    """The CA could not be reached or gave an answer that is not ACME (transient)."""


@dataclass(frozen=True)
class DirectoryInfo:
    url: str
    renewal_info: str | None  # the ARI base URL; None when the CA has no ARI
    caa_identities: tuple[str, ...]
    profiles: Mapping[str, str]


@dataclass(frozen=True)
class Challenge:
    type: str  # "http-01", "dns-01", …
    url: str
    token: str
    status: str
    error: AcmeProblem | None = None


@dataclass(frozen=True)
class Authorization:
    url: str
    name: str
    wildcard: bool
    status: str
    challenges: tuple[Challenge, ...]
    retry_after_s: float | None = None

    def challenge(self, type: str) -> Challenge | None:
        return next((c for c in self.challenges if c.type == type), None)

    @property
    def error(self) -> AcmeProblem | None:
        return next((c.error for c in self.challenges if c.error is not None), None)


@dataclass(frozen=True)
class OrderState:
    url: str
    status: str  # pending | ready | processing | valid | invalid
    names: tuple[str, ...]
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None
    error: AcmeProblem | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class RenewalWindow:
    start: datetime
    end: datetime
    explanation_url: str | None
    retry_after_s: float | None  # when to ask again (RFC 9773 §4.3.3), None when not said
