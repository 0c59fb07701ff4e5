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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn

from ops.devtools.simnode.commands import CommandResult
from ops.devtools.simnode.shell_words import Write, compiled, printf, split_words

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
# What ``shlex.join`` leaves unquoted: a line of only these and '…' words needs no parser.
_PLAIN_OUTSIDE_QUOTES = re.compile(r"[\w@%+=:,./ -]*")


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
    assignments: list[tuple[str, str]] = field(default_factory=list)  # name, value as written

    def finished(self) -> _Command:
        """The command with its leading ``name=value`` words taken as assignments."""
        while self.words and (found := _ASSIGNMENT.fullmatch(self.words[0])):
            self.assignments.append((found[1], found[2]))
            self.words = self.words[1:]
        return self


@dataclass
class _Function:
    body: list[_Command]


class Shell:
    """One shell process: its variables, functions and positional parameters."""

    def __init__(
        self, run: Callable[[list[str]], Awaitable[CommandResult]], out: Write, err: Write
    ) -> None:
        self._run = run
        self._out, self._err = out, err
        # what a line writes, sent at its end: one write per stream instead of one per command
        self._written: tuple[list[str], list[str]] = ([], [])
        self._streams = {"1": self._written[0].append, "2": self._written[1].append}
        self.status = 0
        self._variables: dict[str, str] = {}
        self._functions: dict[str, _Function] = {}
        self._arguments: list[str] = []
        self._pending = ""

    async def run_line(self, line: str) -> None:
        """Runs one line of input (with its newline, if it had one)."""
        try:
            await self._run_line(line)
        finally:
            for written, write in zip(self._written, (self._out, self._err), strict=True):
                if written:
                    write("".join(written))
                    written.clear()

    async def _run_line(self, line: str) -> None:
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
                    commands.append(current.finished())
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
            commands.append(current.finished())
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
        if expanded is not None:
            fields = expanded
        else:
            fields = [f for word in command.words for f in self._expand(word)]
        if not fields:
            for name, value in command.assignments:
                self._variables[name] = "".join(self._expand(value, split=False))
            self.status = 0
            return
        if command.assignments:
            self._syntax_error(command.assignments[0][0] + "=", known=False)
        if not command.redirects:
            await self._call(fields)
            return
        streams = dict(self._streams)
        for operator, target in command.redirects:
            self._redirect(streams, operator, "".join(self._expand(target)))
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
            self.status = printf(arguments[0], arguments[1:], self._streams)
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
        parts = compiled(word)
        if parts is None:
            return list(self._arguments)  # "$@" alone: no arguments make no field at all
        if len(parts) == 1 and parts[0][1] is None:
            return [parts[0][2]]
        fields = [""]
        started = False  # a quoted empty string is still a field
        for quoted, parameter, text in parts:
            if parameter is None:
                fields[-1] += text
                started = True
                continue
            values = self._parameter(parameter)
            if quoted:
                started = True
                if parameter == "@":
                    if values:
                        fields[-1] += values[0]
                        fields += values[1:]
                else:
                    fields[-1] += values[0]
                continue
            joined = " ".join(values)
            pieces = joined.split() if split else [joined]
            if pieces:
                fields[-1] += pieces[0]
                fields += pieces[1:]
                started = True
        return fields if started or fields != [""] else []

    def _parameter(self, name: str) -> list[str]:
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


def _discard(text: str) -> None:
    return None
