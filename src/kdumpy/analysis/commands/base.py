"""The command layer's pieces: the session, the typed errors, and the registry.

A command is declared once, by :func:`command`: its name, aliases, one-line summary
and crash's flags (:class:`Arg`, fed to a real :mod:`argparse` parser).  That
declaration alone registers it: ``help``, the usage line and the shell's completion
all read :data:`COMMANDS`, so a new command is one decorated function in one module.
The handler gets the parsed :class:`argparse.Namespace`, never the raw words.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError


class CommandError(KdumpyError):
    """A command cannot answer; shown as one line, ``name: message``."""


class CommandUsageError(CommandError):
    """The words given do not fit the command's flags; shown with its usage line."""


@dataclass
class Session:
    """A shell session: the program, the values ``p`` has printed ($1, $2 ...), and
    whether the last line failed (the batch exit status reads it, not the text)."""

    prog: Program
    counter: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    failed: bool = False


def _help_layout(prog: str) -> argparse.HelpFormatter:
    """``help NAME`` is laid out for 80 columns whatever the terminal (stable output)."""
    return argparse.HelpFormatter(prog, width=80)


class CommandParser(argparse.ArgumentParser):
    """argparse that never prints nor exits: a bad word is a :class:`CommandUsageError`
    (``unknown option -z``), which the dispatcher turns into one line."""

    def __init__(self, prog: str, usage: str) -> None:
        super().__init__(prog=prog, usage=usage, add_help=False, allow_abbrev=False,
                         exit_on_error=False, formatter_class=_help_layout)  # fmt: skip
        self.flags: set[str] = set()
        # The words from the first argument on are another command's, its flags included
        # (``foreach bt -f``): only the flags before it are this parser's to check.
        self.passthrough = False

    def add_argument(self, *names: str, **options: Any) -> argparse.Action:
        """As argparse's, remembering the flags so an unknown one is named first."""
        self.flags.update(n for n in names if n.startswith("-"))
        return super().add_argument(*names, **options)

    def error(self, message: str) -> NoReturn:
        raise CommandUsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise CommandUsageError(message or "invalid arguments")

    def _unbundled(self, word: str) -> list[str]:
        """``-Tm`` as ``-T -m`` when every letter is a declared flag, else the word."""
        if len(word) > 2 and word[0] == "-" and word[1:].isalpha() and word not in self.flags:
            letters = [f"-{c}" for c in word[1:]]
            if all(flag in self.flags for flag in letters):
                return letters
        return [word]

    def parse_words(self, words: list[str]) -> argparse.Namespace:
        """The namespace for ``words`` (flags and arguments in any order, as crash takes
        them; single-letter flags bundled as getopt allows, ``-Tm``); an option it does
        not declare is an error."""
        words = [w for word in words for w in self._unbundled(word)]
        for word in words:
            if word == "--" or (self.passthrough and word[:1] != "-"):
                break
            if word[:1] == "-" and word[1:2] not in "0123456789" and word not in self.flags:
                raise CommandUsageError(f"unknown option {word}")
        try:
            if self.passthrough:  # argparse.REMAINDER: not with intermixed parsing
                opts, extra = self.parse_known_args(words)
            else:
                opts, extra = self.parse_known_intermixed_args(words)
        except argparse.ArgumentError as exc:
            raise CommandUsageError(str(exc)) from None
        if extra:
            what = "unknown option" if extra[0].startswith("-") else "unexpected argument"
            raise CommandUsageError(f"{what} {extra[0]}")
        return opts


@dataclass(frozen=True)
class Arg:
    """One flag or positional argument, as ``ArgumentParser.add_argument`` takes it."""

    names: tuple[str, ...]
    options: dict[str, Any]

    def __init__(self, *names: str, **options: Any) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "options", options)


Handler = Callable[[Session, argparse.Namespace], str]
# What ``CMD --python`` prints: the kdumpy API code that does what the command does with
# these options (a script an engineer can start from), built from the parsed options.
PythonEquivalent = Callable[[argparse.Namespace], str]


@dataclass(frozen=True)
class Command:
    """A command's declaration: what ``help`` shows and how its words are parsed."""

    name: str
    summary: str
    usage: str
    handler: Handler
    parser: CommandParser
    aliases: tuple[str, ...] = ()
    python: PythonEquivalent | None = None
    # The rest of the line is the command's text, untouched: no words, no flags, and no
    # `|` or `>` operators taken from it (``py`` reads Python, where both are operators).
    raw: bool = False

    def run_text(self, session: Session, text: str) -> str:
        """A raw command's output for the text after its name."""
        return self.handler(session, argparse.Namespace(text=text))

    def run(self, session: Session, words: list[str]) -> str:
        """The command's output; with ``--python``, the API code doing the same instead."""
        if "--python" in words:
            opts = self.parser.parse_words([w for w in words if w != "--python"])
            if self.python is None:
                raise CommandError("no Python equivalent is declared for this command")
            return self.python(opts).rstrip("\n") + "\n"
        return self.handler(session, self.parser.parse_words(words))

    def help(self) -> str:
        """``help NAME``: the summary, the usage, and each argument and flag declared."""
        return f"{self.name}: {self.summary}\n{self.parser.format_help()}"


COMMANDS: dict[str, Command] = {}
ALIASES: dict[str, str] = {}


def command(
    name: str,
    summary: str,
    *args: Arg,
    usage: str = "",
    aliases: tuple[str, ...] = (),
    python: PythonEquivalent | None = None,
    raw: bool = False,
    passthrough: bool = False,
) -> Callable[[Handler], Command]:
    """Declare and register a command: ``@command("log", "dump system message buffer",
    Arg("-t", action="store_true"), usage="log [-t]", aliases=("dmesg",),
    python=lambda opts: "for line in kernel_log(prog): ...")``.  Every command takes
    ``--python``, which prints ``python(opts)`` instead of running it.  A ``raw``
    command gets the rest of its line as ``opts.text``, unsplit; a ``passthrough`` one
    leaves the flags after its first argument to the command it runs (declare that
    argument ``nargs=argparse.REMAINDER``)."""

    def register(handler: Handler) -> Command:
        parser = CommandParser(name, usage or name)
        parser.passthrough = passthrough
        for arg in args:
            parser.add_argument(*arg.names, **arg.options)
        cmd = Command(name, summary, usage or name, handler, parser, aliases, python, raw)
        COMMANDS[name] = cmd
        ALIASES.update(dict.fromkeys(aliases, name))
        return cmd

    return register


def lookup(word: str) -> Command | None:
    """The command a word names, by its name or one of its aliases."""
    return COMMANDS.get(ALIASES.get(word, word))


def command_names() -> Iterator[str]:
    """Every name and alias, sorted: what the shell completes."""
    yield from sorted([*COMMANDS, *ALIASES])


def command_flags() -> dict[str, list[str]]:
    """The flags each name and alias takes, sorted: what the shell completes after it."""
    return {name: sorted(cmd.parser.flags) for name in command_names() if (cmd := lookup(name))}


def usage_line(cmd: Command, error: CommandError) -> str:
    """The one line an error prints: ``name: message``, with the usage for bad words."""
    if isinstance(error, CommandUsageError):
        return f"{cmd.name}: {error} (usage: {cmd.usage})\n"
    return f"{cmd.name}: {error}\n"
