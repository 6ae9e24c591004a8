"""The crash shell's plumbing (issue 14): ``| command`` pipes, ``> file`` redirection,
and what ``pip install .`` must bring for ``kdumpy crash`` to run."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from kdumpy.analysis.commands import split_output
from kdumpy.service.pyruntime import imported_names, package_modules

ROOT = Path(__file__).resolve().parents[2]


def test_ps_piped_to_grep_shows_the_matching_tasks(crash, machine):
    out = crash("ps | grep sleep")
    rows = out.splitlines()
    assert len(rows) == 1 and rows[0].split()[0] == "1300" and rows[0].endswith(" sleep")
    assert crash("log | tail -1").startswith("[ 4000.654321] CPU: 1 PID: 1234")
    assert crash("ps | grep -c kworker") == "2\n"


def test_redirection_writes_a_private_file_and_appends(crash, tmp_path):
    target = tmp_path / "out.txt"
    assert crash(f"sys > {target}") == ""
    assert crash(f"ps 1 >> {target}") == ""
    text = target.read_text()
    assert text.startswith("      KERNEL:") and text.rstrip().endswith("systemd")
    assert target.stat().st_mode & 0o777 == 0o600


def test_redirection_refuses_a_symlink(crash, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / "link").symlink_to(victim)
    out = crash(f"sys > {tmp_path / 'link'}")
    assert out.startswith(f"crash: {tmp_path / 'link'}: cannot write:") and out.count("\n") == 1
    assert victim.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("line", "split"),
    [
        ("ps | grep sleep", ("ps ", "|", " grep sleep")),
        ("bt -a > /tmp/x", ("bt -a ", ">", " /tmp/x")),
        ("log >> l.txt", ("log ", ">>", " l.txt")),
        ("p 'a|b' | cat", ("p 'a|b' ", "|", " cat")),
        ('p "x>y"', ('p "x>y"', "", "")),
        ("p init_task.tasks.next->next", ("p init_task.tasks.next->next", "", "")),
        ("p a->b > f", ("p a->b ", ">", " f")),
    ],
)
def test_split_output_respects_quotes(line, split):
    assert split_output(line) == split


def _main_dependencies() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~ ;\[]", d)[0].lower().replace("_", "-") for d in deps}


def test_what_kdumpy_crash_imports_is_installed_by_pip_install_dot():
    """``pip install .`` then ``kdumpy crash`` must work: every third-party module the
    analysis package and the crash CLI import is provided by a main dependency."""
    modules = [*package_modules("kdumpy.analysis"), "kdumpy.cli.crash", "kdumpy.cli.report"]
    third_party = {
        name.split(".")[0]
        for module in modules
        for name in imported_names(module)
        if name.split(".")[0] not in sys.stdlib_module_names and not name.startswith("kdumpy")
    }
    providers = importlib.metadata.packages_distributions()
    needed = {d.lower().replace("_", "-") for top in third_party for d in providers[top]}
    assert {"prompt-toolkit", "capstone"} <= needed  # the two the issue met
    assert needed <= _main_dependencies(), needed - _main_dependencies()


def test_shell_without_prompt_toolkit_is_a_one_line_error(monkeypatch):
    from kdumpy.cli import crash as crash_cli
    from kdumpy.errors import KdumpyError

    monkeypatch.setitem(sys.modules, "prompt_toolkit", None)  # as if not installed
    with pytest.raises(KdumpyError, match="needs prompt_toolkit"):
        crash_cli._interactive(object(), None)


def test_interactive_prompt_runs_commands_keeps_history_and_completes(
    prog, tmp_path, monkeypatch, capsys
):
    """The prompt_toolkit loop itself, fed through a pipe instead of a terminal."""
    from prompt_toolkit.document import Document
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from kdumpy.analysis.commands import Session, load_commands, run_line
    from kdumpy.cli import crash as crash_cli

    monkeypatch.setattr(crash_cli, "HISTORY", tmp_path / "history")
    session = Session(prog)
    with create_pipe_input() as pipe:
        pipe.send_text("bt\rps | grep sleep\rnosuch\rq\r")
        assert crash_cli._interactive(session, run_line, input=pipe, output=DummyOutput()) == 0
    completer = crash_cli._completer(session, load_commands())
    words = [c.text for c in completer.get_completions(Document("str"), None)]
    symbols = [c.text for c in completer.get_completions(Document("sym init_ta"), None)]
    out = capsys.readouterr().out
    assert "sysrq_handle_crash" in out and "crash: command not found: nosuch" in out
    assert " sleep\n" in out
    assert "ps | grep sleep" in (tmp_path / "history").read_text()
    assert words == ["struct"] and symbols == ["init_task"]


def test_batch_script_and_exit_status(synthetic_vmcore, tmp_path, capsys):
    from kdumpy.cli import main

    script = tmp_path / "cmds"
    script.write_text("sys\nps 1300\n")
    assert main(["crash", str(synthetic_vmcore), "-i", str(script)]) == 0
    assert "PANIC:" in capsys.readouterr().out
    assert main(["crash", str(synthetic_vmcore), "-c", "ps 1", "-c", "nosuch"]) == 1
    assert capsys.readouterr().out.endswith("crash: command not found: nosuch\n")


def test_interactive_py_block_ends_at_an_empty_line(prog, tmp_path, monkeypatch, capsys):
    """``py`` alone at the prompt reads Python lines up to an empty one, as one block."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from kdumpy.analysis.commands import Session, run_line
    from kdumpy.cli import crash as crash_cli

    monkeypatch.setattr(crash_cli, "HISTORY", tmp_path / "history")
    with create_pipe_input() as pipe:
        pipe.send_text("py\rfor i in range(2):\r    print('line', i * 21)\r\rpy i\rq\r")
        assert crash_cli._interactive(Session(prog), run_line, input=pipe,
                                      output=DummyOutput()) == 0  # fmt: skip
    assert capsys.readouterr().out == "line 0\nline 21\n1\n"
