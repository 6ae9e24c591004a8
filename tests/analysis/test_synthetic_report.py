"""``kdumpy report`` on the synthetic machine: every field against the machine's record."""

from __future__ import annotations

import hashlib
import json

from kdumpy.analysis.report import build_report, format_report, signature
from kdumpy.cli import main


def test_report_fields(prog, machine):
    r = build_report(prog)
    assert r["release"] == "6.8.0-synthetic" and r["version"] == machine.uts["version"]
    assert r["crash_time"] == "Wed Dec  3 08:20:00 UTC 2025" and r["uptime"] == "01:06:40"
    assert r["panic"] == {"message": "Kernel panic - not syncing: sysrq triggered crash",
                          "kind": "sysrq", "evidence": "sysrq: Trigger a crash"}  # fmt: skip
    crashing = r["crashing_task"]
    task = machine.panic_task
    assert (crashing["pid"], crashing["comm"], crashing["cpu"]) == (1234, "bash", 1)
    assert crashing["task"] == f"{task.address:#x}"
    assert [f["function"] for f in crashing["backtrace"]] == [f.function for f in task.frames]
    assert [int(f["pc"], 16) for f in crashing["backtrace"]] == [f.pc for f in task.frames]
    assert r["taint"] == {
        "flags": "OE",
        "modules": [
            {"module": "evil\x1b[5m", "taints": "E"},
            {"module": "synthmod", "taints": "O"},
        ],
    }
    panic_at = [t for _, t in machine.log].index(
        b"Kernel panic - not syncing: sysrq triggered crash"
    )
    assert r["recent_log"] == [t.decode() for _, t in machine.log[: panic_at + 1]]
    dstate = {t["pid"]: [f["location"] for f in t["backtrace"]] for t in r["dstate_tasks"]}
    assert set(dstate) == {1400, 1401}
    assert dstate[1400][2] == "synth_wait+0x10 [synthmod]"
    mi = machine.meminfo
    slab = mi["slab_r"] + mi["slab_u"]
    assert r["memory"] == {"total_kb": mi["total"] * 4, "free_kb": mi["free"] * 4,
                           "cached_kb": mi["file"] * 4, "slab_kb": slab * 4,
                           "used_kb": (mi["total"] - mi["free"]) * 4}  # fmt: skip
    assert r["warnings"] == []


def test_signature_skips_the_generic_crash_path(prog, machine):
    r = build_report(prog)
    text = "sysrq:sysrq_handle_crash/__handle_sysrq/write_sysrq_trigger/proc_reg_write/vfs_write"
    assert r["signature"] == {"text": text, "hash": hashlib.sha1(text.encode()).hexdigest()[:16]}
    assert signature("oops", [])["text"] == "oops:"


def test_report_text_and_json_from_the_cli(synthetic_vmcore, capsys):
    assert main(["report", str(synthetic_vmcore), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dump"] == str(synthetic_vmcore) and report["crashing_task"]["pid"] == 1234
    assert main(["report", str(synthetic_vmcore)]) == 0
    text = capsys.readouterr().out
    assert text == format_report(report)
    assert 'Crashing task: PID 1234 "bash" on CPU 1' in text
    assert "Tasks in D state: 2" in text and "Kind:      sysrq" in text
