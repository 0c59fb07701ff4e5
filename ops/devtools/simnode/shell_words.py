"""What bash makes of one word, and of ``printf``'s format: the simulated node's shell's parts.

``compiled(word)`` consumes a word as written (quotes and all) and emits its parts: plain text
and the parameters (``$name``, ``$1``, ``$?``, ``$#``, ``$@``) to expand, each marked quoted or
not; the shell expands them against its variables. ``printf(format, arguments, streams)`` writes
what bash's builtin would and emits its status. ``split_words`` is ``shlex.split`` made quick for
what ``shlex.join`` writes.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable

Write = Callable[[str], None]
_EXPANSION = re.compile(r"\$(?:([0-9#?@])|\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}|([A-Za-z_]\w*))")
_PRINTF_SPEC = re.compile(r"%([-+ 0#]*[0-9]*)([sdi%])")
_PRINTF_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "a": "\a", "e": "\x1b"}
_PLAIN_OR_SINGLE_QUOTED = re.compile(r"(?:[^\s']+|'[^']*')+")


def split_words(line: str) -> list[str]:
    """``shlex.split(line)``, quicker for what ``shlex.join`` writes: plain words and
    single-quoted ones (anything else, e.g. double quotes or backslashes, goes to shlex)."""
    if '"' in line or "\\" in line or line.count("'") % 2:
        return shlex.split(line)
    return [word.replace("'", "") for word in _PLAIN_OR_SINGLE_QUOTED.findall(line)]


# (quoted, parameter name or None for plain text, text)
_Part = tuple[bool, str | None, str]


@functools.lru_cache(maxsize=4096)
def compiled(word: str) -> tuple[_Part, ...] | None:
    """``word`` as written, cut into text and parameters once (a session repeats its words);
    ``None`` for ``"$@"`` alone."""
    if word == '"$@"':
        return None
    if "$" not in word and '"' not in word and "\\" not in word:
        return ((True, None, word.replace("'", "")),)  # plain and '…' parts, as written
    parts: list[_Part] = []
    at = 0
    while at < len(word):
        if word[at] == "'":
            end = word.index("'", at + 1)
            parts.append((True, None, word[at + 1 : end]))
        elif word[at] == '"':
            end = _closing_quote(word, at)
            parts += _parts(word[at + 1 : end], quoted=True) or [(True, None, "")]
        else:
            end = _unquoted_end(word, at)
            parts += _parts(word[at:end], quoted=False)
            at = end
            continue
        at = end + 1
    return tuple(parts)


def _parts(text: str, *, quoted: bool) -> list[_Part]:
    """Text and parameters of a stretch of a word outside quotes, or inside double quotes
    (where a backslash keeps its meaning only before ``$ ` " \\`` and a newline)."""
    parts: list[_Part] = []
    at = 0
    while at < len(text):
        char = text[at]
        if char == "\\" and at + 1 < len(text) and (not quoted or text[at + 1] in '$`"\\\n'):
            parts.append((True, None, text[at + 1]))  # an escaped character is quoted
            at += 2
        elif char == "$" and (found := _EXPANSION.match(text, at)):
            parts.append((quoted, found[1] or found[2] or found[3], ""))
            at = found.end()
        else:
            parts.append((quoted, None, char))
            at += 1
    return parts


def _unquoted_end(word: str, at: int) -> int:
    while at < len(word) and word[at] not in "'\"":
        at += 2 if word[at] == "\\" else 1
    return min(at, len(word))


def _closing_quote(word: str, at: int) -> int:
    end = at + 1
    while word[end] != '"':
        end += 2 if word[end] == "\\" else 1
    return end


def printf(form: str, arguments: list[str], streams: dict[str, Write]) -> int:
    """bash's ``printf FORMAT ARG…``: the format reused while arguments remain; the status."""
    status = 0
    remaining = list(arguments)
    output: list[str] = []
    while True:
        used = 0

        def spec(found: re.Match[str]) -> str:
            nonlocal used, status
            flags, kind = found[1], found[2]
            if kind == "%":
                return "%"
            value = remaining.pop(0) if remaining else ""
            used += 1
            if kind == "s":
                return f"%{flags}s" % value
            try:
                number = int(value or "0")
            except ValueError:
                streams["2"](f"bash: printf: {value}: invalid number\n")
                status, number = 1, 0
            return f"%{flags}d" % number

        output.append(_PRINTF_SPEC.sub(spec, _unescape(form)))
        if not remaining or used == 0:
            break
    streams["1"]("".join(output))
    return status


@functools.lru_cache(maxsize=256)
def _unescape(form: str) -> str:
    return re.sub(r"\\(.)", lambda m: _PRINTF_ESCAPES.get(m[1], "\\" + m[1]), form)
