"""The command layer itself (issue 14): every command declared once, with crash's flags
through a real parser; bad words a one-line usage error naming the command; ``help``
and the shell's completion read from the registry, so a command declared in a test
appears in both without another edit."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from prompt_toolkit.document import Document

from kdumpy.analysis.commands import (
    ALIASES,
    COMMANDS,
    Arg,
    Session,
    command,
    command_flags,
    command_names,
    load_commands,
    run_line,
)
from kdumpy.cli import crash as crash_cli

# What the shell offered before the registry (crash's names for them), fixed here so a
# command lost in the conversion fails: the registry cannot be its own oracle.
CRASH_COMMANDS = {
    "sys", "log", "ps", "bt", "rd", "struct", "union", "p", "whatis", "sym", "mod", "kmem",
    "runq", "files", "dis", "set", "foreach", "help", "q",
    # crash's command set (issue 14)
    "btop", "ptob", "ptov", "vtop", "mount", "swap", "vm", "list", "tree", "irq", "task", "sig",
    "fuser", "timer", "net", "dev", "ipcs", "waitq", "search", "pte", "ascii", "eval", "bpf",
}  # fmt: skip
CRASH_ALIASES = {"dmesg": "log", "lsmod": "mod", "quit": "q", "exit": "q", "?": "help"}


def test_every_crash_command_and_alias_is_registered():
    load_commands()
    assert set(COMMANDS) == CRASH_COMMANDS | {"py"}  # py: Python, a raw command
    assert {a: ALIASES[a] for a in CRASH_ALIASES} == CRASH_ALIASES


@pytest.mark.parametrize("name", sorted(CRASH_COMMANDS))
def test_an_unknown_flag_is_a_one_line_usage_error(crash, name, capsys):
    out = crash(f"{name} --no-such-flag")
    usage = COMMANDS[name].usage
    assert out == f"{name}: unknown option --no-such-flag (usage: {usage})\n"
    assert capsys.readouterr() == ("", "")  # argparse neither printed nor exited


def test_an_alias_reports_errors_under_the_command_name(crash):
    assert crash("dmesg -z") == "log: unknown option -z (usage: log [-t|-T] [-m])\n"


def test_a_bad_count_is_a_usage_error(crash):
    assert crash("rd jiffies zz") == (
        "rd: argument count: invalid count: zz "
        "(usage: rd [-8|-16|-32|-64] [-p|-u] [-a] [-s|-S|-SS] [-d|-D] [-x] [-N] [-R] "
        "[-o offset] [-e end] [-r file] address|symbol [count])\n"
    )
    assert crash("dis").startswith("dis: the following arguments are required: address")


def test_help_lists_every_registered_command(crash):
    rows = crash("help").splitlines()
    assert [row.split()[0] for row in rows] == sorted(CRASH_COMMANDS | {"py"})
    for name in CRASH_COMMANDS:
        assert crash(f"help {name}").splitlines()[1] == f"usage: {COMMANDS[name].usage}"


@pytest.fixture
def echo() -> Iterator[None]:
    """A command declared here and nowhere else: ``echo [-n] WORD...``."""

    @command("echo", "say the words back",
             Arg("-n", dest="count", action="store_true", help="how many words"),
             Arg("words", nargs="+"), usage="echo [-n] word ...", aliases=("say",))  # fmt: skip
    def cmd_echo(session: Session, opts: argparse.Namespace) -> str:
        return f"{len(opts.words)}\n" if opts.count else " ".join(opts.words) + "\n"

    yield
    del COMMANDS["echo"], ALIASES["say"]


def test_a_declared_command_runs_and_appears_in_help_and_completion(echo, prog):
    session = Session(prog)
    assert run_line(session, "echo a b -n") == "2\n"  # flags anywhere, as crash takes them
    assert run_line(session, "say a b") == "a b\n"
    assert run_line(session, "echo") == (
        "echo: the following arguments are required: words (usage: echo [-n] word ...)\n"
    )
    assert "echo     say the words back" in run_line(session, "help").splitlines()
    assert run_line(session, "help say") == (
        "echo: say the words back\nusage: echo [-n] word ...\n\n"
        "positional arguments:\n  words\n\noptions:\n  -n     how many words\n"
    )
    completer = crash_cli._completer(session, command_names(), command_flags())
    assert [c.text for c in completer.get_completions(Document("ec"), None)] == ["echo"]
    assert [c.text for c in completer.get_completions(Document("sa"), None)] == ["say"]
    assert [c.text for c in completer.get_completions(Document("say a -"), None)] == ["-n"]


def test_flags_complete_from_the_declaration(prog):
    load_commands()
    completer = crash_cli._completer(Session(prog), command_names(), command_flags())
    complete = [c.text for c in completer.get_completions(Document("bt -"), None)]
    assert complete == ["-F", "-V", "-a", "-c", "-d", "-e", "-f", "-l", "-p", "-s", "-x"]


def test_batch_status_comes_from_the_failure_not_the_text(synthetic_vmcore, tmp_path, capsys):
    from kdumpy.cli import main

    vmcore = str(synthetic_vmcore)
    # One line that looks like an error report ("help: get help") is a success ...
    assert main(["crash", vmcore, "-c", "help help | head -1"]) == 0
    assert capsys.readouterr().out == "help: get help\n"
    # ... and a failure redirected to a file, leaving no text on the screen, is one.
    out = tmp_path / "out"
    assert main(["crash", vmcore, "-c", f"rd -z > {out}"]) == 1
    assert out.read_text().startswith("rd: unknown option -z (usage: rd ")


def test_fields_align_names_as_crash_does():
    from kdumpy.analysis.commands.output import fields, quoted

    # crash's "set": names right-aligned to the longest ("COMMAND").
    assert fields([("PID", 1), ("COMMAND", quoted("sh\x1b[2J"))]) == (
        '    PID: 1\nCOMMAND: "sh\\x1b[2J"\n'
    )
    assert fields([("CPUS", 2)], width=12) == "        CPUS: 2\n"
