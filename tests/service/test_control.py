"""Service state: status/start on this machine (the kernel's sysfs is the oracle), the
pending-test record, and the rebuild manifest."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kdumpy.service import control, kexec, manifest, teststatus
from kdumpy.service.config import parse_config
from kdumpy.service.paths import ServicePaths


def _kdumpy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdumpy", *args], capture_output=True, text=True, check=False
    )


def test_status_follows_the_kernel(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"path {tmp_path}\n")
    proc = _kdumpy("status", "--config", str(conf))
    loaded = Path("/sys/kernel/kexec_crash_loaded")
    is_loaded = loaded.exists() and loaded.read_text().strip() == "1"
    assert proc.returncode == (0 if is_loaded else 3)
    assert proc.stdout.splitlines()[0] == (
        "Kdump is operational" if is_loaded else "Kdump is not operational"
    )


def test_showmem_reads_sysfs() -> None:
    proc = _kdumpy("showmem")
    assert proc.returncode == 0
    assert proc.stdout == f"Reserved {kexec.crash_size() // 2**20}MB memory for crash kernel\n"


def test_start_reports_config_errors_first(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\nlink_delay 10\n")
    proc = _kdumpy("start", "--config", str(conf))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"kdump: {conf}:2: deprecated kdump config option: link_delay; "
        "see kdump.conf(5) for alternatives",
        "Starting kdump: [FAILED]",
    ]


def test_start_without_reservation_fails_like_kdumpctl(tmp_path: Path) -> None:
    if kexec.crash_size() != 0:
        return  # this machine has a reservation: nothing to check here
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"path {tmp_path}\n")
    proc = _kdumpy("start", "--config", str(conf))
    assert proc.returncode == 1
    expected = (
        "Kdump is not supported on this kernel"
        if not kexec.crash_supported()
        else "No memory reserved for crash kernel"
    )
    assert proc.stdout.splitlines() == [f"kdump: {expected}", "Starting kdump: [FAILED]"]


def _paths(tmp_path: Path) -> ServicePaths:
    return ServicePaths(config=tmp_path / "kdump.conf", state_dir=tmp_path / "state")


def test_pending_test_resolved_from_the_dump(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    dumps = tmp_path / "crash"
    config = parse_config(f"path {dumps}\n", str(paths.config))
    status = teststatus.TestStatus("pending", "1700000000-5", boot_id="an-earlier-boot")
    teststatus.write(paths, status)
    assert teststatus.cmdline_extra(paths) == ["kdump_test_id=1700000000-5"]
    # What the capture side leaves when the test dump succeeded.
    result = dumps / "kdump-test-1700000000-5" / "vmcore-creation.status"
    result.parent.mkdir(parents=True)
    result.write_text("success\n")
    lines: list[str] = []
    teststatus.report_result(paths, config, lines.append)
    assert len(lines) == 1 and lines[0].startswith("Notice: Last successful vmcore creation test")
    assert teststatus.read(paths).state == "success"
    assert teststatus.cmdline_extra(paths) == []


def test_pending_test_without_dump_after_reboot_is_a_failure(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    config = parse_config(f"path {tmp_path / 'crash'}\n", str(paths.config))
    teststatus.write(paths, teststatus.TestStatus("pending", "1-2", boot_id="another-boot"))
    lines: list[str] = []
    teststatus.report_result(paths, config, lines.append)
    assert lines and lines[0].startswith("Notice: Last NOT successful vmcore creation test")


def test_pending_test_in_this_boot_is_still_pending(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    config = parse_config(f"path {tmp_path / 'crash'}\n", str(paths.config))
    status = teststatus.TestStatus("pending", "1-2", boot_id=teststatus.boot_id())
    teststatus.write(paths, status)
    lines: list[str] = []
    teststatus.report_result(paths, config, lines.append)
    assert lines == [] and teststatus.read(paths).state == "pending"


def test_remote_target_needs_manual_check(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    config = parse_config("ssh root@192.0.2.7\n", str(paths.config))
    teststatus.write(paths, teststatus.TestStatus("pending", "1-2", boot_id="x"))
    lines: list[str] = []
    teststatus.report_result(paths, config, lines.append)
    assert lines[0].startswith("Notice: Require manual check")


def test_manifest_detects_changes(tmp_path: Path) -> None:
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"path {tmp_path}\n")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel v1")
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "modules.dep").write_text("kernel/a.ko:\n")
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"archive")
    record = tmp_path / "manifest.json"
    config = parse_config(conf.read_text(), str(conf))

    def now() -> dict:
        return manifest.inputs(config, None, kernel, modules)

    assert "missing" in (manifest.stale_reason(record, initrd, now()) or "")
    manifest.write(record, now(), initrd, {"modules": []})
    assert manifest.stale_reason(record, initrd, now()) is None
    kernel.write_bytes(b"kernel v2")
    assert manifest.stale_reason(record, initrd, now()) == f"{kernel} changed"
    manifest.write(record, now(), initrd, {})
    conf.write_text(f"path {tmp_path}\nfinal_action poweroff\n")
    assert manifest.stale_reason(record, initrd, now()) == f"{conf} changed"
    manifest.write(record, now(), initrd, {})
    initrd.write_bytes(b"tampered")
    assert manifest.stale_reason(record, initrd, now()) == f"{initrd} was modified"
    initrd.unlink()
    assert "does not exist" in (manifest.stale_reason(record, initrd, now()) or "")


def test_force_rebuild_always_rebuilds(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    config = parse_config("force_rebuild 1\n", str(paths.config))
    assert control.rebuild_reason(replace(paths), config) == "force_rebuild is set"


def test_unmounted_fs_target_is_mounted_read_only_for_the_result(tmp_path: Path) -> None:
    """A dedicated dump disk is not mounted in the first kernel: status mounts it
    read-only (a real ext4 on a loop device) to find the test's verdict."""
    import shutil

    if shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        pytest.skip("util-linux/e2fsprogs missing")
    root = tmp_path / "tree"
    verdict = root / "dumps" / "kdump-test-7-8" / "vmcore-creation.status"
    verdict.parent.mkdir(parents=True)
    verdict.write_text("success\n")
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip(f"no loop device: {loop.stderr.strip()}")
    device = loop.stdout.strip()
    try:
        paths = _paths(tmp_path)
        config = parse_config(f"ext4 {device}\npath /dumps\n", str(paths.config))
        teststatus.write(paths, teststatus.TestStatus("pending", "7-8", boot_id="before"))
        lines: list[str] = []
        teststatus.report_result(paths, config, lines.append)
        assert lines and lines[0].startswith("Notice: Last successful vmcore creation test")
        # This test's loop device only: tests on other xdist workers mount their own.
        mounted = Path("/proc/self/mountinfo").read_text().splitlines()
        assert not [m for m in mounted if f" {device} " in m], "the temporary mount was left"
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
