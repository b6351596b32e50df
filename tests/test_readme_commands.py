"""The README's commands, checked: each ``python -m X …`` line of its ``sh`` blocks names a module
that answers ``--help`` (exit 0, no broker needed), and every flag the line uses is one its help lists.

Lines may start with ``python -m`` or ``.venv/bin/python -m`` and continue with a trailing ``\\``;
``# …`` comments are dropped. Bare words after the module (``up``, a CSV path) stay in front of
``--help``, so a subcommand's own help is the one asked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from alert_desk.auth import parse_token_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
COMMAND = re.compile(r"^(?:\.venv/bin/)?python -m (?P<module>[\w.]+)(?P<rest>.*)$")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_]*")
# Pipelines whose main() does not parse with pipelines.cli yet: their --help lists no flag.
HELP_WITHOUT_FLAGS: set[str] = set()


@dataclass(frozen=True)
class ReadmeCommand:
    module: str
    words: tuple[str, ...]  # what follows the module, up to the first flag: subcommands, files
    flags: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join([self.module, *self.words, *self.flags])


def shell_lines(markdown: str) -> list[str]:
    """The lines of the ``sh`` fenced blocks, continuations joined and comments dropped."""
    lines, in_block, pending = [], False, ""
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```sh" and not in_block
            continue
        if not in_block:
            continue
        text = pending + re.sub(r"\s+#\s.*$", "", line).strip()
        pending = text[:-1] + " " if text.endswith("\\") else ""
        if not pending and text:
            lines.append(text)
    return lines


def readme_commands() -> list[ReadmeCommand]:
    commands = []
    for line in shell_lines(README.read_text()):
        match = COMMAND.match(line)
        if match:
            arguments = match["rest"].split()
            words = []
            for argument in arguments:
                if argument.startswith(("-", "[")):
                    break
                words.append(argument)
            commands.append(ReadmeCommand(match["module"], tuple(words), tuple(dict.fromkeys(FLAG.findall(match["rest"])))))
    return commands


def help_of(module: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )


def test_the_readme_shows_the_commands_of_every_component() -> None:
    modules = {command.module for command in readme_commands()}
    assert {
        "runners.demo",
        "runners.local",
        "simulator",
        "pipelines.stream",
        "pipelines.history",
        "csv_ingest",
        "pipelines.analysis",
        "alert_desk",
    } <= modules


@pytest.mark.parametrize("command", readme_commands(), ids=str)
def test_each_readme_command_answers_help_and_knows_its_flags(command: ReadmeCommand) -> None:
    result = help_of(command.module, *command.words, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr
    if command.module in HELP_WITHOUT_FLAGS:
        return
    listed = set(FLAG.findall(result.stdout))
    if "--help_beam" in listed:
        listed |= set(FLAG.findall(help_of(command.module, "--help_beam").stdout))
    assert not set(command.flags) - listed, f"flags the README uses that `{command.module} --help` does not list"


def test_the_readme_desk_tokens_are_ones_the_desk_accepts() -> None:
    """The desk refuses tokens shorter than 16 characters: an example that copies as is must not be one."""
    tokens = [token for line in shell_lines(README.read_text()) for token in re.findall(r"--token[ =]([^\s\]]+)", line)]
    assert tokens, "the README shows the desk's --token"
    for token in tokens:
        parse_token_spec(token)
