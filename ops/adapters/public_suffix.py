"""The Public Suffix List from Debian's ``publicsuffix`` package, parsed once per process.

Consumes ``/usr/share/publicsuffix/public_suffix_list.dat`` (or another path given); emits
``PublicSuffixRules`` (domain/rate_limits.py), which tell the registered domain a name counts
against in Let's Encrypt's per-domain limit. A missing file is an error naming the package:
without the list every name would count as its own registered domain, and the model would
let through what the CA refuses.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from domain.rate_limits import PublicSuffixRules

DEBIAN_LIST = Path("/usr/share/publicsuffix/public_suffix_list.dat")


class PublicSuffixListMissing(RuntimeError):
    """The list file is not there."""


def public_suffix_rules(path: Path = DEBIAN_LIST) -> PublicSuffixRules:
    """The rules of the list at ``path``; the same object on every call for one path."""
    return _load(str(path))


@cache
def _load(path: str) -> PublicSuffixRules:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PublicSuffixListMissing(
            f"the Public Suffix List is not at {path}: install Debian's publicsuffix package "
            "(apt-get install publicsuffix)"
        ) from None
    return PublicSuffixRules.parse(text)
