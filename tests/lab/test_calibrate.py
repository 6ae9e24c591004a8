"""`kdumpy lab calibrate`: the smallest reservation found by real captures in QEMU.

Oracles: each trial's serial console (the kernels' own account: "Initramfs unpacking
failed", the OOM killer, or the capture's "saved vmcore to"), and the dump it left on the
target disk, read out with debugfs and opened by makedumpfile.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from test_lab_cli import kdumpy

from kdumpy.lab import qemu
from kdumpy.lab.calibrate import Rig, margin, trial
from kdumpy.lab.qemu import parse_size

MiB = 1 << 20


def test_margin_is_at_least_32m_and_20_percent() -> None:
    for size in (64 * MiB, 96 * MiB, 192 * MiB, 512 * MiB):
        got = margin(size)
        assert got >= size + 32 * MiB and got >= size * 1.2 and got % (16 * MiB) == 0


@pytest.mark.vm
def test_calibrate_the_lab_kernel(tmp_path: Path) -> None:
    proc = kdumpy(
        "lab", "calibrate", "--kernel", "6.1", "--memory", "1G", "--sizes", "128M,256M",
        "--config", str(tmp_path / "none.conf"), "--workdir", str(tmp_path),
        env={"COLUMNS": "250"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    found = re.search(r"Smallest reservation that captured: (\S+)\.", proc.stdout)
    recommended = re.search(r"crashkernel=(\S+)", proc.stdout.split("Recommended", 1)[1])
    assert found and recommended, proc.stdout
    smallest = parse_size(found.group(1))
    assert parse_size(recommended.group(1)) == margin(smallest)
    for size in ("128M", "256M"):
        run = tmp_path / f"crashkernel-{size}"
        if not run.exists():
            continue  # bisection skipped it
        serial = (run / "serial.log").read_text(errors="replace")
        captured = "saved vmcore to" in serial
        # The tool's verdict for this size is the console's, and the search is monotonic.
        assert captured == (parse_size(size) >= smallest), size
        if captured:
            check_saved_dump(run / "target.img", serial, tmp_path / f"vmcore-{size}")
        else:
            assert re.search(r"Initramfs unpacking failed|Out of memory|kexec FAILED", serial)


def check_saved_dump(disk: Path, serial: str, out: Path) -> None:
    """The vmcore on the target is the first kernel's crash: makedumpfile reads its log."""
    listing = subprocess.run(
        ["debugfs", "-R", "ls /dumps", str(disk)], capture_output=True, text=True, check=True
    ).stdout
    (directory,) = re.findall(r"127\.0\.0\.1-[0-9:-]+", listing)
    subprocess.run(
        ["debugfs", "-R", f"dump /dumps/{directory}/vmcore {out}", str(disk)],
        capture_output=True,
        check=True,
    )
    dmesg = out.with_suffix(".txt")
    subprocess.run(["makedumpfile", "--dump-dmesg", str(out), str(dmesg)], check=True,
                   capture_output=True)  # fmt: skip
    text = dmesg.read_text(errors="replace")
    panic = next(ln for ln in text.splitlines() if "Kernel panic - not syncing" in ln)
    assert panic.split("] ", 1)[1] in serial


FAKE_QEMU = """#!/bin/sh
# Stands in for QEMU: prints a capture kernel's last words on the serial file, then hangs
# as a dead guest does (it never powers off).
for a in "$@"; do case $a in file:*) serial=${a#file:} ;; esac; done
{ echo 'kdumpy-selftest: crashing'
  echo '[    1.5] Kernel panic - not syncing: System is deadlocked on memory'; } > "$serial"
exec sleep 60
"""


def test_a_trial_ends_when_the_capture_kernel_dies(tmp_path: Path, monkeypatch) -> None:
    """A capture kernel that panicked never powers off: the trial stops QEMU at its last
    words instead of waiting out the timeout, and names the reason."""
    fake = tmp_path / "qemu"
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    monkeypatch.setattr(qemu, "qemu_binary", lambda arch="amd64": str(fake))
    rig = Rig(disks=lambda run_dir: [], saved=lambda run_dir: False)
    start = time.monotonic()
    t = trial(tmp_path / "vmlinuz", tmp_path / "initrd", 128 * MiB, 96 * MiB, tmp_path, 50, rig)
    assert time.monotonic() - start < 20  # not the 50 s timeout
    assert not t.ok and t.why == "out of memory in the capture kernel", t
