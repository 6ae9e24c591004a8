"""The capture side saving a real dump to a local directory, with makedumpfile as collector.

Oracles: the saved file is read back by makedumpfile itself (--dump-dmesg) and by
kdumpy's reader; vmcore-dmesg.txt is checked against the guest's serial console, which
recorded the same kernel log independently up to the panic.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

from .helpers import run_capture

MDF_CONF = """ext4 LABEL=kdumptgt
path /var/crash
core_collector makedumpfile -l --message-level 7 -d 31
final_action poweroff
"""


def _only_dump_dir(root: Path) -> Path:
    dirs = list((root / "var" / "crash").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_save_to_directory(tmp_path, dump_61, makedumpfile):
    conf = tmp_path / "kdump.conf"
    conf.write_text(MDF_CONF)
    target = tmp_path / "target"
    target.mkdir()
    before = time.time()
    run = run_capture(conf, dump_61.vmcore, "--target-dir", str(target))
    after = time.time()
    assert run.returncode == 0, run.stderr
    assert "kdump: would poweroff" in run.stderr
    dump_dir = _only_dump_dir(target)
    # <ip>-<YYYY-MM-DD-HH:MM:SS>, local targets use 127.0.0.1, the time is now.
    match = re.fullmatch(r"127\.0\.0\.1-(\d{4}-\d\d-\d\d-\d\d:\d\d:\d\d)", dump_dir.name)
    assert match, dump_dir.name
    stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d-%H:%M:%S"))
    assert before - 1 <= stamp <= after + 1
    names = sorted(p.name for p in dump_dir.iterdir())
    assert names == ["kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]
    assert stat.S_IMODE(dump_dir.stat().st_mode) == 0o700
    for path in dump_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # makedumpfile reads the kernel log back out of the saved dump...
    mdf_log = tmp_path / "mdf-dmesg"
    subprocess.run([makedumpfile, "--dump-dmesg", str(dump_dir / "vmcore"), str(mdf_log)],
                   check=True, capture_output=True)  # fmt: skip
    saved = (dump_dir / "vmcore-dmesg.txt").read_text()
    assert _messages(saved) == _messages(mdf_log.read_text())
    # ...and the serial console saw the same lines before the panic.
    serial = dump_61.serial_log.read_text(errors="replace")
    panic_line = next(ln for ln in _messages(saved) if "Kernel panic" in ln)
    assert panic_line in serial
    assert "sysrq: Trigger a crash" in saved
    from kdumpy.vmcore import open_dump

    with open_dump(dump_dir / "vmcore") as dump:
        assert dump.format == "kdump"
        assert dump.vmcoreinfo.osrelease == dump_61.kernel.release
    log = (dump_dir / "kexec-dmesg.log").read_text()
    assert "kdump: saving the dump with: makedumpfile" in log


def _messages(text: str) -> list[str]:
    """Log lines without their timestamps (the two readers format those differently)."""
    return [re.sub(r"^\[\s*\d+\.\d+\]\s?", "", ln) for ln in text.splitlines() if ln.strip()]


def test_full_target_keeps_incomplete_and_fails(tmp_path, dump_61, makedumpfile):
    """A real filesystem that fills up: vmcore-incomplete stays, failure_action runs."""
    target = tmp_path / "small"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        conf = tmp_path / "kdump.conf"
        conf.write_text(MDF_CONF.replace("final_action poweroff", "failure_action halt"))
        run = run_capture(conf, dump_61.vmcore, "--target-dir", str(target))
        dump_dir = _only_dump_dir(target)
        names = {p.name for p in dump_dir.iterdir()}
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert run.returncode == 1
    assert "vmcore-incomplete" in names and "vmcore" not in names
    assert "failure_action halt" in run.stderr and "kdump: would halt" in run.stderr
    assert "saved vmcore to" not in run.stderr
    assert "would reboot" not in run.stderr  # halt only: final_action is not run after it


def test_kdump_test_id_directory_and_status(tmp_path, dump_61, makedumpfile):
    conf = tmp_path / "kdump.conf"
    conf.write_text(MDF_CONF)
    target = tmp_path / "t"
    target.mkdir()
    run = run_capture(conf, dump_61.vmcore, "--target-dir", str(target),
                      "--cmdline", "console=ttyS0 kdump_test_id=1700000000-42")  # fmt: skip
    assert run.returncode == 0, run.stderr
    dump_dir = target / "var/crash/kdump-test-1700000000-42"
    assert (dump_dir / "vmcore-creation.status").read_text() == "success\n"
    assert (dump_dir / "vmcore").exists()


def test_hooks_order_and_status(tmp_path, dump_61, makedumpfile):
    """kdump_pre, pre.d/*, the dump, post.d/* then kdump_post, both given the status."""
    from kdumpy.capture.actions import Actions
    from kdumpy.capture.flow import CaptureOptions
    from kdumpy.capture.flow import run_capture as flow
    from kdumpy.capture.log import CaptureLog

    trace = tmp_path / "trace"
    hooks = tmp_path / "etc-kdump"

    def hook(path: Path, name: str, status: int = 0) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {trace}\nexit {status}\n')
        path.chmod(0o755)
        return str(path)

    pre = hook(tmp_path / "pre.sh", "kdump_pre")
    post = hook(tmp_path / "post.sh", "kdump_post")
    hook(hooks / "pre.d" / "01-a", "pre.d/01-a", status=3)  # pre.d failures only logged
    hook(hooks / "post.d" / "01-b", "post.d/01-b")
    conf = tmp_path / "kdump.conf"
    conf.write_text(MDF_CONF + f"kdump_pre {pre}\nkdump_post {post}\n")
    target = tmp_path / "t"
    target.mkdir()
    log = CaptureLog(open(os.devnull, "w"))  # noqa: SIM115
    actions = Actions(log, dry_run=True)
    opts = CaptureOptions(config=str(conf), vmcore=str(dump_61.vmcore), mountpoint=str(target),
                          require_mount=False, cmdline="", hook_dirs=hooks)  # fmt: skip
    result = flow(opts, log, actions)
    assert result.ok, log.text()
    assert trace.read_text().splitlines() == [
        "kdump_pre ", "pre.d/01-a ", "post.d/01-b 0", "kdump_post 0",
    ]  # fmt: skip
    assert actions.performed == ["poweroff"]


def test_failing_kdump_pre_skips_dump(tmp_path, dump_61):
    pre = tmp_path / "pre.sh"
    pre.write_text("#!/bin/sh\nexit 7\n")
    pre.chmod(0o755)
    conf = tmp_path / "kdump.conf"
    conf.write_text(MDF_CONF + f"kdump_pre {pre}\n")
    target = tmp_path / "t"
    target.mkdir()
    run = run_capture(conf, dump_61.vmcore, "--target-dir", str(target))
    assert run.returncode == 1
    assert not (target / "var").exists()
    assert "kdump_pre" in run.stderr and "would poweroff" in run.stderr
