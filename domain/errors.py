"""Errors the domain raises; each says, in words a WHMCS admin can read, what was wrong."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal the domain makes."""


class InvalidInput(DomainError):
    """The request itself is malformed or out of bounds (HTTP 400/422)."""


class NotFound(DomainError):
    """The service (or other aggregate) does not exist (HTTP 404)."""


class Conflict(DomainError):
    """The command makes no sense in the aggregate's current state (HTTP 409)."""
