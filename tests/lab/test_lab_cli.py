"""`kdumpy lab` from the command line, including every way it can fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def kdumpy(*args: str, env: dict[str, str] | None = None, timeout: float = 1200):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kdumpy", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_unknown_kernel(tmp_path):
    err = one_line_error(kdumpy("lab", "vmcore", "--kernel", "5.99", "-o", str(tmp_path / "v")))
    assert "unknown lab kernel '5.99'" in err
    assert leftovers(tmp_path) == []


def test_qemu_missing(tmp_path):
    proc = kdumpy(
        "lab", "vmcore", "-o", str(tmp_path / "v"), env={"KDUMPY_QEMU": "qemu-system-nonexistent"}
    )
    assert "qemu-system-nonexistent not found" in one_line_error(proc)
    assert leftovers(tmp_path) == []


def test_failed_download(tmp_path):
    # An empty cache and a mirror nobody listens on: the download must fail cleanly.
    cache = tmp_path / "cache"
    proc = kdumpy(
        "lab",
        "vmcore",
        "-o",
        str(tmp_path / "v"),
        env={"KDUMPY_LAB_CACHE": str(cache), "KDUMPY_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"},
    )
    err = one_line_error(proc)
    assert "apt-get update of bookworm from http://127.0.0.1:9/debian failed" in err
    assert not (tmp_path / "v").exists()


def test_bad_memory_size(tmp_path):
    err = one_line_error(kdumpy("lab", "vmcore", "--memory", "lots", "-o", str(tmp_path / "v")))
    assert "bad size 'lots'" in err


@pytest.mark.vm
def test_guest_that_never_crashes_times_out(tmp_path):
    proc = kdumpy(
        "lab", "vmcore", "--crash", "none", "--timeout", "45", "-o", str(tmp_path / "vmcore")
    )
    err = one_line_error(proc)
    assert "did not power off within 45 s" in err
    assert not (tmp_path / "vmcore").exists()
    # Only the serial log is kept, for the post-mortem; no half-written dump.
    assert leftovers(tmp_path) == ["vmcore.serial.log"]


@pytest.mark.vm
def test_capture_kernel_that_cannot_load(tmp_path):
    """A reservation too small for the capture kernel: kexec fails, the guest reboots."""
    proc = kdumpy("lab", "vmcore", "--crashkernel", "16M", "-o", str(tmp_path / "vmcore"))
    err = one_line_error(proc)
    assert "kexec load failed" in err
    assert leftovers(tmp_path) == ["vmcore.serial.log"]


@pytest.mark.vm
def test_vmcore_command_writes_dump_and_serial_log(tmp_path):
    out = tmp_path / "vmcore"
    proc = kdumpy(
        "lab",
        "vmcore",
        "--kernel",
        "6.1",
        "--memory",
        "768M",
        "--crashkernel",
        "192M",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert leftovers(tmp_path) == ["vmcore", "vmcore.serial.log"]
    assert out.read_bytes()[:4] == b"\x7fELF"
    assert out.stat().st_mode & 0o777 == 0o600
    assert "6.1.0-" in proc.stdout and "sysrq triggered crash" in proc.stdout


def test_module_crash_needs_a_matching_compiler(tmp_path):
    """sid's kernel is built with a gcc this host lacks: say so instead of booting."""
    err = one_line_error(
        kdumpy("lab", "vmcore", "--kernel", "7", "--crash", "null", "-o", str(tmp_path / "v"))
    )
    assert "needs gcc-" in err and "which this host lacks" in err
    assert leftovers(tmp_path) == []


@pytest.mark.vm
def test_demo_shows_the_whole_cycle(tmp_path):
    """README's first command ends in `kdumpy lab demo`: it must show every stage that landed."""
    proc = kdumpy("lab", "demo", "-o", str(tmp_path / "demo" / "vmcore"), env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for row in (
        "sysrq triggered crash",
        "panic to vmcore saved",
        "VMCOREINFO",
        "kdumpy collect -d 31",
        "kernel log from the dump",
        "kdumpy report",
        "sysrq_handle_crash",
    ):
        assert row in out, f"{row!r} missing from the demo:\n{out}"
    assert (tmp_path / "demo" / "vmcore").stat().st_mode & 0o777 == 0o600
