"""``kdumpy crash`` and ``kdumpy report`` end to end on lab dumps, with the dump alone and
with the kernel's vmlinux, checked against drgn with the Debian -dbg vmlinux (tasks, panic
task, its backtrace, log, modules, utsname) and against how the lab crashed the guest."""

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


# crash's two-letter states -> drgn's task_state_to_char.
CRASH_TO_DRGN_STATE = {"RU": "R", "IN": "S", "UN": "D", "ST": "T", "TR": "t", "DE": "X",
                       "ZO": "Z", "PA": "P", "ID": "I"}  # fmt: skip


@pytest.fixture(params=["dump-alone", "with-vmlinux"])
def files(request, lab_dump) -> list[str]:
    """What the user gives: the dump alone (symbols from kallsyms, types from BTF), or
    the Debian -dbg vmlinux first and the dump, as every kdump guide teaches."""
    if request.param == "dump-alone":
        return [str(lab_dump.vmcore)]
    return [str(lab_dump.kernel.dbg_vmlinux()), str(lab_dump.vmcore)]


def crash(files: list[str], command: str) -> str:
    result = kdumpy("crash", *files, "-c", command)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.vm
def test_crash_ps_agrees_with_drgn(lab_dump, files):
    """Every task (pid, task_struct address, command, state) is drgn's; crash adds one
    idle task per CPU, which drgn's task list leaves out."""
    oracle = drgn_answers(lab_dump)
    rows = []
    for line in crash(files, "ps").splitlines()[1:]:
        pid, _ppid, _cpu, task, state, _mem, _vsz, _rss, comm = line[1:].split(maxsplit=8)
        comm = comm[1:-1] if comm.startswith("[") and comm.endswith("]") else comm
        rows.append((int(pid), int(task, 16), comm, CRASH_TO_DRGN_STATE[state]))
    want = {(t["pid"], t["address"], t["comm"], t["state"]) for t in oracle["tasks"]}
    assert {r for r in rows if r[0]} == want
    assert len(rows) == len(want) + len([r for r in rows if r[0] == 0])


@pytest.mark.vm
def test_crash_bt_agrees_with_drgn(lab_dump, files):
    oracle = drgn_answers(lab_dump)
    lines = crash(files, "bt").splitlines()
    assert lines[0].split()[1] == str(oracle["crashed"]["pid"])
    frames = [ln.split("] ")[1].split()[0] for ln in lines if ln.lstrip().startswith("#")]
    # kallsyms may name a label inside drgn's function (entry_SYSCALL_64_after_hwframe).
    theirs = [t[0] for t in oracle["crashed"]["trace"]]
    assert frames[:-1] == theirs[:-1]
    assert frames[-1].startswith(theirs[-1])


@pytest.mark.vm
def test_crash_log_is_drgns_dmesg(lab_dump, files):
    assert crash(files, "log") == drgn_answers(lab_dump)["dmesg"]


@pytest.mark.vm
def test_crash_mod_lists_drgns_modules(lab_dump, files):
    lines = crash(files, "mod").splitlines()
    assert lines[0].split()[:2] == ["MODULE", "NAME"]
    names = [ln.split()[1] for ln in lines[1:]]
    assert sorted(names) == sorted(drgn_answers(lab_dump)["modules"])


@pytest.mark.vm
def test_crash_sys_agrees_with_drgn(lab_dump, files):
    oracle = drgn_answers(lab_dump)
    fields = {}
    for line in crash(files, "sys").splitlines():
        key, _, value = line.partition(": ")
        fields[key.strip()] = value
    uts = oracle["init_uts_ns"]
    assert fields["KERNEL"].startswith(files[0] if len(files) == 2 else "(none")
    for key in ("release", "version", "nodename"):
        assert fields[key.upper()] == uts[key]
    assert fields["MACHINE"].split()[0] == uts["machine"]
    assert fields["PANIC"] == f'"Kernel panic - not syncing: {lab_dump.panic_message}"'
    crashed = next(t for t in oracle["tasks"] if t["pid"] == oracle["crashed"]["pid"])
    assert int(fields["PID"]) == crashed["pid"]
    assert int(fields["TASK"], 16) == crashed["address"]
    assert fields["COMMAND"] == f'"{crashed["comm"]}"'
    # crash counts the idle task of each CPU too.
    assert int(fields["TASKS"]) == len(oracle["tasks"]) + int(fields["CPUS"])


@pytest.mark.vm
def test_report_json_names_the_sysrq_crash(lab_dump, files):
    oracle = drgn_answers(lab_dump)
    result = kdumpy("report", *files, "--json")
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
