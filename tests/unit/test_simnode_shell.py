"""The simulated node's shell answers input as a real bash does, byte for byte.

Each script runs twice: through ``Shell`` with a fake command runner, and through
``bash --noprofile --norc`` with a ``sudo`` on its PATH that answers the same way.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from handlers.hestia_session import SHELL_COMMAND, SHELL_PREAMBLE, session_line
from ops.devtools.simnode.commands import CommandResult
from ops.devtools.simnode.shell import Shell, ShellExit

# exits with its number of arguments, prints them on stdout and the last one on stderr
FAKE_SUDO = '#!/bin/sh\necho "ran sudo $*"\necho "last ${#}" >&2\nexit $#\n'


async def _fake_sudo(words: list[str]) -> CommandResult:
    if words[0] != "sudo":
        return CommandResult(127, "", f"bash: {words[0]}: command not found\n")
    arguments = words[1:]
    return CommandResult(
        len(arguments), f"ran sudo {' '.join(arguments)}\n", f"last {len(arguments)}\n"
    )


def _simulated(lines: list[str]) -> tuple[str, str, int]:
    out: list[str] = []
    err: list[str] = []
    shell = Shell(_fake_sudo, out.append, err.append)

    async def feed() -> int:
        try:
            for line in lines:
                await shell.run_line(line)
        except ShellExit as stop:
            return stop.status
        return shell.status

    status = asyncio.run(feed())
    return "".join(out), "".join(err), status


def _bash(lines: list[str], tmp_path: Path) -> tuple[str, str, int]:
    sudo = tmp_path / "sudo"
    sudo.write_text(FAKE_SUDO)
    sudo.chmod(0o755)
    done = subprocess.run(
        shlex.split(SHELL_COMMAND),
        input="".join(lines),
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        check=False,
        timeout=20,
    )
    return done.stdout, done.stderr, done.returncode


SCRIPTS = {
    "the driver's command session": [
        SHELL_PREAMBLE + "\n",
        session_line("hw-end-1", ["v-list-users", "json"]),
        session_line("hw-end-2", ["v-add-user", "a b", "$(reboot)", "", "it's", "*", "x;y"]),
        session_line("hw-end-3", ["v-echo", '"q"', "\\", "~", "#c", "a=b"]),
    ],
    "variables, printf and redirections": [
        "x=5; printf '%s-%d|' \"$x\" 7 8; printf '\\n'\n",
        'echo to-err >&2; echo $? "$#"\n',
        "sudo one two >/dev/null; echo status $?\n",
        'y=$x$x; echo "${y}" $y\n',
    ],
    "functions and positional parameters": [
        'f() { echo "$#" "$@"; shift; echo "$1"; }; f 1 "2 3" 4\n',
        "g() {\n",
        '  sudo "$@" </dev/null 2>&1\n',
        "}\n",
        "g a 'b c'\n",
    ],
    "backslashes and double quotes": [
        'x=1; echo a\\ b "c\\"d" "e\\f" \\$x "$x"\'$x\' ""\n',
        'set_ok=yes; printf "%s|%s\\n" "${set_ok}" "$unset"\n',
    ],
    "a quote over two lines": ["echo 'a\n", "b'\n", "printf '%d\\n' zz; echo $?\n"],
    "a command that is not there": ["nothere x\n", "echo $?\n"],
    "a syntax error stops the shell": ["echo one\n", "echo two; ;\n", "echo three\n"],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_shell_answers_as_bash_does(name: str, tmp_path: Path) -> None:
    lines = SCRIPTS[name]
    bash_out, bash_err, bash_status = _bash(lines, tmp_path)
    bash_err = re.sub(r"line [0-9]+: ", "", bash_err)  # bash names the line of a script
    out, err, status = _simulated(lines)
    assert (out, status) == (bash_out, bash_status)
    if "syntax error" in name:  # and then quotes it
        assert err == bash_err.splitlines(keepends=True)[0]
    else:
        assert err == bash_err
