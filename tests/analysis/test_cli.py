"""``kdumpy crash`` and ``kdumpy report`` end to end on lab dumps, checked against drgn
(tasks, panic task, its backtrace) and against how the lab crashed the guest (sysrq)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from analysis_oracle import drgn_answers


def kdumpy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kdumpy", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.vm
def test_crash_batch_ps_and_bt_agree_with_drgn(lab_dump):
    oracle = drgn_answers(lab_dump)
    result = kdumpy("crash", str(lab_dump.vmcore), "-c", "ps", "-c", "bt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ps_rows = [ln for ln in lines[1:] if ln[:1] in " >" and ln[1:].split()[:1] != []]
    pids = {int(ln[1:].split()[0]) for ln in ps_rows if ln[1:].split()[0].isdigit()}
    assert pids - {0} == {t["pid"] for t in oracle["tasks"]}
    header = next(ln for ln in lines if ln.startswith("PID: "))
    assert header.split()[1] == str(oracle["crashed"]["pid"])
    frames = [ln.split("] ")[1].split()[0] for ln in lines if ln.lstrip().startswith("#")]
    # kallsyms may name a label inside drgn's function (entry_SYSCALL_64_after_hwframe).
    theirs = [t[0] for t in oracle["crashed"]["trace"]]
    assert frames[:-1] == theirs[:-1]
    assert frames[-1].startswith(theirs[-1])


@pytest.mark.vm
def test_report_json_names_the_sysrq_crash(lab_dump):
    oracle = drgn_answers(lab_dump)
    result = kdumpy("report", str(lab_dump.vmcore), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert lab_dump.crash == "sysrq"
    assert report["panic"]["kind"] == "sysrq"
    assert lab_dump.panic_message in report["panic"]["message"]
    assert report["crashing_task"]["pid"] == oracle["crashed"]["pid"]
    assert report["signature"]["text"].startswith("sysrq:sysrq_handle_crash")
    assert report["recent_log"][-1].startswith("Kernel panic - not syncing")
    dstate = {t["pid"] for t in report["dstate_tasks"]}
    assert dstate == {t["pid"] for t in oracle["tasks"] if t["state"] == "D"}


def test_crash_rejects_a_file_that_is_not_a_dump(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a dump\n")
    result = kdumpy("crash", str(bogus), "-c", "bt")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and str(bogus) in result.stderr
    assert "Traceback" not in result.stderr


def test_report_on_a_missing_file_is_one_line(tmp_path):
    result = kdumpy("report", str(tmp_path / "absent"))
    assert result.returncode != 0
    assert result.stderr.strip() == f"kdumpy: {tmp_path / 'absent'}: no such file"


@pytest.mark.vm
def test_bad_commands_and_addresses_are_one_line_errors(lab_dump_61):
    result = kdumpy(
        "crash", str(lab_dump_61.vmcore), "-c", "nosuchcmd", "-c", "rd 0", "-c", "struct nosuch"
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "crash: command not found: nosuchcmd"
    assert lines[1] == "rd: invalid kernel virtual address: 0x0 (not mapped)"
    assert lines[2] == "struct: no type named 'struct nosuch' in the dump's BTF"
    assert len(lines) == 3


@pytest.mark.vm
def test_interactive_prompt_runs_commands_keeps_history_and_completes(
    lab_dump_61, tmp_path, monkeypatch, capsys
):
    """The prompt_toolkit loop itself, fed through a pipe instead of a terminal."""
    from prompt_toolkit.document import Document
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from kdumpy.analysis import Program
    from kdumpy.analysis.commands import Session, load_commands, run_line
    from kdumpy.cli import crash as crash_cli

    monkeypatch.setattr(crash_cli, "HISTORY", tmp_path / "history")
    with Program.open(lab_dump_61.vmcore) as prog, create_pipe_input() as pipe:
        session = Session(prog)
        pipe.send_text("bt\rnosuch\rq\r")
        assert crash_cli._interactive(session, run_line, input=pipe, output=DummyOutput()) == 0
        completer = crash_cli._completer(session, load_commands())
        words = [c.text for c in completer.get_completions(Document("str"), None)]
        symbols = [c.text for c in completer.get_completions(Document("sym init_ta"), None)]
    out = capsys.readouterr().out
    assert "sysrq_handle_crash" in out and "crash: command not found: nosuch" in out
    assert "bt" in (tmp_path / "history").read_text()
    assert words == ["struct"]
    assert "init_task" in symbols
