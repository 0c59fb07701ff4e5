"""The node's one shell: enough of bash to run what a client writes down a ``bash`` channel.

``Shell(run, out, err)`` consumes the lines a client sends to ``bash --noprofile --norc`` and
emits what bash would write to stdout (``out``) and stderr (``err``); ``status`` is the exit
status of the last command, what bash exits with when its input ends. It is written from bash's
manual, not from any client's code, so lines that bash would run differently are run
differently here too. It knows: function definitions ``name() { …; }``; simple commands joined
by ``;``; words quoted with '…', "…" and ``\\`` with ``$name``, ``$1``…, ``$#``, ``$?`` and
``$@`` expanded (unquoted ones split at blanks, ``"$@"`` one word per argument); assignments
``name=value``; the builtins ``shift``, ``printf``, ``echo``, ``true``, ``false`` and ``:``;
the redirections ``<FILE`` (the simulated commands read no input), ``>&2``, ``2>&1`` and
``>/dev/null``. Every other command goes to ``run`` (the executor answers 127, "command not
found", for anything that is not a Hestia command). A syntax error, or syntax this shell does
not know, writes bash's kind of message to stderr and raises ``ShellExit(2)``: bash reading a
script from its input stops at a syntax error too.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn

from ops.devtools.simnode.commands import CommandResult

Write = Callable[[str], None]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.S)
_TOKEN = re.compile(
    r"""(?P<blank>[ \t]+)
    |(?P<newline>\n)
    |(?P<comment>\#.*)
    |(?P<redirect>[0-9]?(?:>&|<&|>>|>|<))
    |(?P<operator>;;|;|&&|\|\||[|&()])
    |(?P<word>(?:[^\s|&;()<>'"\\]|\\.|'[^']*'|"(?:[^"\\]|\\.)*")+)""",
    re.X | re.S,
)
_EXPANSION = re.compile(r"\$(?:([0-9#?@])|\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}|([A-Za-z_]\w*))")
_PRINTF_SPEC = re.compile(r"%([-+ 0#]*[0-9]*)([sdi%])")
_PRINTF_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "a": "\a", "e": "\x1b"}
# What ``shlex.join`` leaves unquoted: a line of only these and '…' words needs no parser.
_PLAIN_OUTSIDE_QUOTES = re.compile(r"[\w@%+=:,./ -]*")
_PLAIN_OR_SINGLE_QUOTED = re.compile(r"(?:[^\s']+|'[^']*')+")


def split_words(line: str) -> list[str]:
    """``shlex.split(line)``, quicker for what ``shlex.join`` writes: plain words and
    single-quoted ones (anything else, e.g. double quotes or backslashes, goes to shlex)."""
    if '"' in line or "\\" in line or line.count("'") % 2:
        return shlex.split(line)
    return [word.replace("'", "") for word in _PLAIN_OR_SINGLE_QUOTED.findall(line)]


class ShellExit(Exception):
    """The shell stops; ``status`` is its exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Incomplete(Exception):
    """The input so far ends inside a quote or a function body: bash reads on."""


@dataclass
class _Command:
    words: list[str] = field(default_factory=list)  # as written, quotes and all
    redirects: list[tuple[str, str]] = field(default_factory=list)  # (operator, target)


@dataclass
class _Function:
    body: list[_Command]


class Shell:
    """One shell process: its variables, functions and positional parameters."""

    def __init__(
        self, run: Callable[[list[str]], Awaitable[CommandResult]], out: Write, err: Write
    ) -> None:
        self._run = run
        self._streams = {"1": out, "2": err}
        self.status = 0
        self._variables: dict[str, str] = {}
        self._functions: dict[str, _Function] = {}
        self._arguments: list[str] = []
        self._pending = ""

    async def run_line(self, line: str) -> None:
        """Runs one line of input (with its newline, if it had one)."""
        source = self._pending + line
        quoted_removed = re.sub(r"'[^']*'", "", source.rstrip("\n"))
        if not self._pending and _PLAIN_OUTSIDE_QUOTES.fullmatch(quoted_removed):
            words = split_words(source)
            if words and "=" not in words[0] and words[0] not in ("{", "}"):
                await self._simple(_Command(), expanded=words)
                return
        try:
            commands = self._parse(source)
        except _Incomplete:
            self._pending = source if source.endswith("\n") else source + "\n"
            return
        self._pending = ""
        for command in commands:
            await self._simple(command)

    def _parse(self, source: str) -> list[_Command]:
        return self._commands(self._tokens(source))

    def _commands(self, tokens: list[tuple[str, str]]) -> list[_Command]:
        commands: list[_Command] = []
        current = _Command()
        defined = False  # a definition just ended: a ";" may follow it
        at = 0
        while at < len(tokens):
            kind, text = tokens[at]
            at += 1
            if kind == "operator" and text == "(" and len(current.words) == 1:
                at = self._define(current.words[0], tokens, at)
                current, defined = _Command(), True
                continue
            if kind in ("operator", "newline") and text in (";", "\n"):
                if current.words or current.redirects:
                    commands.append(current)
                elif text == ";" and not defined:
                    self._syntax_error(text)
                current = _Command()
            elif kind == "operator":
                self._syntax_error(text, known=False)
            elif kind == "redirect":
                if at >= len(tokens) or tokens[at][0] != "word":
                    self._syntax_error("newline")
                current.redirects.append((text, tokens[at][1]))
                at += 1
            else:
                current.words.append(text)
            defined = False
        if current.words or current.redirects:
            commands.append(current)
        return commands

    def _define(self, name: str, tokens: list[tuple[str, str]], at: int) -> int:
        """Reads ``) { BODY; }`` after ``name(``; the index after the closing brace."""
        if not _NAME.fullmatch(name):
            self._syntax_error("(")
        if tokens[at : at + 1] != [("operator", ")")]:
            self._syntax_error(tokens[at][1] if at < len(tokens) else "newline")
        at += 1
        while at < len(tokens) and tokens[at][0] == "newline":
            at += 1
        if at >= len(tokens):
            raise _Incomplete
        if tokens[at] != ("word", "{"):
            self._syntax_error(tokens[at][1], known=False)
        closing = next(
            (
                i
                for i in range(at + 1, len(tokens))
                if tokens[i] == ("word", "}") and tokens[i - 1][1] in (";", "\n")
            ),
            None,
        )
        if closing is None:
            raise _Incomplete
        body = self._commands(tokens[at + 1 : closing])
        if not body:
            self._syntax_error("}")
        self._functions[name] = _Function(body)
        self.status = 0
        return closing + 1

    def _tokens(self, source: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        at = 0
        while at < len(source):
            found = _TOKEN.match(source, at)
            if found is None:
                if source[at] in "'\"" or source[at:] == "\\\n" or source[at] == "\\":
                    raise _Incomplete  # an open quote: bash reads the next line into it
                self._syntax_error(source[at])
            at = found.end()
            kind = found.lastgroup or ""
            if kind not in ("blank", "comment"):
                tokens.append((kind, found.group()))
        return tokens

    def _syntax_error(self, near: str, *, known: bool = True) -> NoReturn:
        shown = "newline" if near == "\n" else near
        if known:
            self._streams["2"](f"bash: syntax error near unexpected token `{shown}'\n")
        else:
            self._streams["2"](f"bash: `{shown}': not supported by this node's shell\n")
        raise ShellExit(2)

    async def _simple(self, command: _Command, expanded: list[str] | None = None) -> None:
        streams = dict(self._streams)
        for operator, target in command.redirects:
            self._redirect(streams, operator, "".join(self._expand(target)))
        words = command.words
        assignments: list[tuple[str, str]] = []
        while expanded is None and words and (found := _ASSIGNMENT.fullmatch(words[0])):
            assignments.append((found[1], "".join(self._expand(found[2], split=False))))
            words = words[1:]
        fields = expanded if expanded is not None else [f for w in words for f in self._expand(w)]
        if not fields:
            self._variables.update(assignments)
            self.status = 0
            return
        if assignments:
            self._syntax_error(command.words[0], known=False)
        saved, self._streams = self._streams, streams
        try:
            await self._call(fields)
        finally:
            self._streams = saved

    def _redirect(self, streams: dict[str, Write], operator: str, target: str) -> None:
        fd = operator[0] if operator[0].isdigit() else ("0" if "<" in operator else "1")
        kind = operator.lstrip("0123456789")
        if kind == "<":
            return  # stdin: the simulated commands read none
        if kind == ">&" and target in ("1", "2"):
            streams[fd] = streams[target]
        elif kind in (">", ">>") and target == "/dev/null":
            streams[fd] = _discard
        else:
            self._syntax_error(operator + target, known=False)

    async def _call(self, fields: list[str]) -> None:
        name, arguments = fields[0], fields[1:]
        function = self._functions.get(name)
        if function is not None:
            saved, self._arguments = self._arguments, arguments
            try:
                for command in function.body:
                    await self._simple(command)
            finally:
                self._arguments = saved
        elif name == "shift":
            count = int(arguments[0]) if arguments and arguments[0].isdigit() else 1
            self.status = 0 if count <= len(self._arguments) else 1
            if count <= len(self._arguments):
                self._arguments = self._arguments[count:]
        elif name == "printf" and arguments:
            self.status = _printf(arguments[0], arguments[1:], self._streams)
        elif name == "echo":
            self._streams["1"](" ".join(arguments) + "\n")
            self.status = 0
        elif name in ("true", ":", "false"):
            self.status = 1 if name == "false" else 0
        else:
            result = await self._run(fields)
            self._streams["1"](result.stdout)
            self._streams["2"](result.stderr)
            self.status = result.exit_code

    def _expand(self, word: str, *, split: bool = True) -> list[str]:
        """The fields one word stands for: quotes removed, parameters expanded, unquoted
        expansions split at blanks, ``"$@"`` one field per argument."""
        if word == '"$@"':
            return list(self._arguments)  # no arguments: no field at all, not an empty one
        fields: list[str] = [""]
        started = False  # a quoted empty string is still a field
        at = 0
        while at < len(word):
            char = word[at]
            if char == "'":
                end = word.index("'", at + 1)
                fields[-1] += word[at + 1 : end]
                started, at = True, end + 1
            elif char == '"':
                end = _closing_quote(word, at)
                self._expand_quoted(word[at + 1 : end], fields)
                started, at = True, end + 1
            elif char == "\\":
                fields[-1] += word[at + 1 : at + 2]
                started, at = True, at + 2
            elif char == "$" and (found := _EXPANSION.match(word, at)):
                values = self._parameter(found)
                text = " ".join(values)
                pieces = text.split() if split else [text]
                if pieces:
                    fields[-1] += pieces[0]
                    fields += pieces[1:]
                    started = True
                at = found.end()
            else:
                fields[-1] += char
                started, at = True, at + 1
        return fields if started or fields != [""] else []

    def _expand_quoted(self, inner: str, fields: list[str]) -> None:
        at = 0
        while at < len(inner):
            char = inner[at]
            if char == "\\" and at + 1 < len(inner) and inner[at + 1] in '$`"\\\n':
                fields[-1] += inner[at + 1]
                at += 2
            elif char == "$" and (found := _EXPANSION.match(inner, at)):
                values = self._parameter(found)
                if found[1] == "@":
                    if values:
                        fields[-1] += values[0]
                        fields += values[1:]
                else:
                    fields[-1] += values[0] if values else ""
                at = found.end()
            else:
                fields[-1] += char
                at += 1

    def _parameter(self, found: re.Match[str]) -> list[str]:
        name = found[1] or found[2] or found[3]
        if name == "@":
            return list(self._arguments)
        if name == "#":
            return [str(len(self._arguments))]
        if name == "?":
            return [str(self.status)]
        if name.isdigit():
            index = int(name)
            return [self._arguments[index - 1] if 0 < index <= len(self._arguments) else ""]
        return [self._variables.get(name, "")]


def _closing_quote(word: str, at: int) -> int:
    end = at + 1
    while word[end] != '"':
        end += 2 if word[end] == "\\" else 1
    return end


def _discard(text: str) -> None:
    return None


def _printf(form: str, arguments: list[str], streams: dict[str, Write]) -> int:
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


def _unescape(form: str) -> str:
    return re.sub(r"\\(.)", lambda m: _PRINTF_ESCAPES.get(m[1], "\\" + m[1]), form)
