"""Terminal escape injection (issue 17, finding 5): names and log text from a dump carry
escape sequences; no command prints them raw.  The synthetic machine holds a task named
ESC[2J ESC]0;pwn BEL (a user can set any name with PR_SET_NAME), a log line with colour
and hyperlink sequences, and a module whose name ends in ESC[5m."""

from __future__ import annotations

import json

import pytest
from synthetic import HOSTILE_LOG

from kdumpy.cli import main
from kdumpy.printable import escape_bytes, escape_text, shown

COMM = r"\x1b[2J\x1b]0;pwn\x07"  # how the hostile task name must look


@pytest.mark.parametrize("line", ["ps", "ps 666", "foreach ps", "bt 666", "set 666",
                                  "foreach bt", "foreach files", "runq"])  # fmt: skip
def test_task_commands_escape_the_task_name(crash, line):
    out = crash(line)  # the fixture fails on any control character
    if line not in ("runq", "foreach files"):
        assert COMM in out


def test_log_escapes_each_record_but_keeps_its_text(crash):
    out = crash("log")
    assert r"evil: \x1b[31mred\x1b[0m \x1b]8;;http://x\x07link" in out
    assert "sysrq: Trigger a crash" in out


def test_mod_and_sys_escape_module_and_panic_text(crash):
    assert r"evil\x1b[5m" in crash("mod")
    crash("sys")


def test_rd_ascii_escapes_memory(crash, machine):
    out = crash(f"rd -a {machine.tasks[666].address + _comm_offset(crash):x}")
    assert COMM in out


def _comm_offset(crash) -> int:
    out = crash("struct task_struct.comm")
    return int(out.split("[")[1].split("]")[0])


def test_report_text_is_escaped_and_json_is_faithful(synthetic_vmcore, capsysbinary):
    assert main(["report", str(synthetic_vmcore)]) == 0
    text = capsysbinary.readouterr().out
    assert b"\x1b" not in text and b"\x07" not in text
    assert rb"evil\x1b[5m(E)" in text and rb"evil: \x1b[31mred" in text
    assert main(["report", str(synthetic_vmcore), "--json"]) == 0
    report = json.loads(capsysbinary.readouterr().out)
    assert HOSTILE_LOG.decode() in report["recent_log"]
    assert {"module": "evil\x1b[5m", "taints": "E"} in report["taint"]["modules"]


def test_crash_batch_output_is_escaped(synthetic_vmcore, capsysbinary):
    assert main(["crash", str(synthetic_vmcore), "-c", "ps", "-c", "log"]) == 0
    out = capsysbinary.readouterr().out
    assert b"\x1b" not in out and b"\x07" not in out
    assert COMM.encode() in out


def test_the_rule():
    # C0, DEL and C1 controls (U+009B is a one-character CSI), and bidi overrides.
    assert escape_text("a\x1bb\x7f\x9b\u202e\tz\n", "\n") == r"a\x1bb\x7f\x9b\u202e\x09z" + "\n"
    assert escape_text("café ✓") == "café ✓"  # printable non-ASCII stays readable
    assert shown(b"x\nforged row\xff") == r"x\x0aforged row\xff"
    # kdumpy dmesg: makedumpfile's bytes, sign-extended above 0x7f, isspace() kept.
    assert escape_bytes(b"a\x1b\xe9\t\r", b" \t\v\f\r", b"\\xffffff%02x") == (
        b"a\\x1b\\xffffffe9\t\r"
    )
