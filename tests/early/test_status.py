"""Status logic: the verdict from the evidence, staleness from recorded hashes, and the
kernel log reader against util-linux's dmesg (the oracle) on this machine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.service import early, early_state
from kdumpy.service.early_state import EarlyState, LogLine
from kdumpy.service.paths import ServicePaths

RELEASE = "6.1.0-50-cloud-amd64"


def _paths(tmp: Path) -> ServicePaths:
    return ServicePaths(config=tmp / "kdump.conf", state_dir=tmp / "state", release=RELEASE)


def _enabled(tmp: Path) -> tuple[ServicePaths, dict[str, Path]]:
    paths = _paths(tmp)
    files = {"capture kernel": tmp / "vmlinuz", "capture initramfs": tmp / "initrd.img"}
    for name, path in files.items():
        path.write_bytes(name.encode() * 100)
    state = EarlyState(RELEASE, "initramfs-tools", early_state.inputs(files),
                       {k: str(v) for k, v in files.items()}, "/boot/initrd.img-x")  # fmt: skip
    early_state.write(paths.state_dir, state)
    return paths, files


LOADED = [LogLine(1.2, "kdumpy-early[120]: early-kdump is enabled."),
          LogLine(1.5, "kdumpy-early[120]: kexec: loaded early-kdump kernel")]  # fmt: skip


def test_covered_when_early_kdump_loaded_it(tmp_path: Path) -> None:
    paths, _ = _enabled(tmp_path)
    cov = early.assess(paths, "ro rd.earlykdump", LOADED, loaded=True)
    assert cov.covered
    assert cov.lines[-1].startswith("Boot-time crashes are covered: early kdump loaded the "
                                    "capture kernel 1.50 s after")  # fmt: skip


def test_stale_copy_is_reported(tmp_path: Path) -> None:
    paths, files = _enabled(tmp_path)
    files["capture initramfs"].write_bytes(b"rebuilt")
    cov = early.assess(paths, "ro rd.earlykdump", LOADED, loaded=True)
    assert any("stale: capture initramfs" in ln and "changed" in ln for ln in cov.lines)
    assert cov.covered and "stale" in cov.lines[-1]
    files["capture kernel"].unlink()
    state = early_state.read(paths.state_dir, RELEASE)
    assert state is not None
    reasons = early_state.stale_reasons(state)
    assert any("capture kernel" in r and "is missing" in r for r in reasons)


@pytest.mark.parametrize(
    ("cmdline", "log", "loaded", "why"),
    [
        ("ro", [], True, "rd.earlykdump is not on this boot's command line; crashes after"),
        ("ro rd.earlykdump", [], False, "the early stage did not run"),
        ("ro rd.earlykdump",
         [LogLine(1.0, "kdumpy-early[9]: kexec: failed to load early-kdump kernel: no memory")],
         False, "kexec: failed to load early-kdump kernel: no memory"),
        ("ro rd.earlykdump", LOADED, False, "early kdump did not load"),  # unloaded since
    ],
)  # fmt: skip
def test_not_covered_says_why(tmp_path, cmdline, log, loaded, why) -> None:
    paths, _ = _enabled(tmp_path)
    cov = early.assess(paths, cmdline, log, loaded)
    assert not cov.covered
    assert cov.lines[-1].startswith("Boot-time crashes are NOT covered: ")
    assert why in cov.lines[-1]


def test_not_enabled(tmp_path: Path) -> None:
    cov = early.assess(_paths(tmp_path), "ro", [], loaded=False)
    assert not cov.covered and cov.lines[0].startswith("Early kdump: not enabled")
    assert cov.lines[-1].endswith("early kdump is not enabled")


def test_kmsg_record_format() -> None:
    line = early_state.parse_kmsg_record(
        "5,1234,1500123,-;kdumpy-early[1]: early-kdump is enabled.\n"
    )
    assert line == LogLine(1.500123, "kdumpy-early[1]: early-kdump is enabled.")
    assert early_state.parse_kmsg_record("garbage") is None


def test_kmsg_reader_agrees_with_dmesg() -> None:
    """The host's own kernel log, read by us and by util-linux dmesg."""
    if shutil.which("dmesg") is None or not Path("/dev/kmsg").exists():
        pytest.skip("no dmesg or /dev/kmsg")
    ours = early_state.kmsg_lines()
    proc = subprocess.run(["dmesg", "--notime", "--nopager"], capture_output=True, text=True)
    if proc.returncode != 0 or not ours:
        pytest.skip("kernel log not readable here")
    theirs = [ln.strip() for ln in proc.stdout.splitlines()]
    # The same messages in the same order (dmesg may have a few newer ones at the end).
    ours_text = [ln.text.strip() for ln in ours]
    count = min(len(ours_text), len(theirs), 200)
    assert count > 10 and ours_text[:count] == theirs[:count]
    assert all(a.seconds <= b.seconds for a, b in zip(ours, ours[1:], strict=False))


def test_world_readable_system_initramfs_is_flagged(tmp_path: Path) -> None:
    """It carries the capture initramfs (kdump.conf, an ssh key for ssh targets)."""
    paths, _ = _enabled(tmp_path)
    state = early_state.read(paths.state_dir, RELEASE)
    assert state is not None
    initramfs = tmp_path / "initrd.img-x"
    initramfs.write_bytes(b"x")
    initramfs.chmod(0o644)
    state.system_initramfs = str(initramfs)
    early_state.write(paths.state_dir, state)
    cov = early.assess(paths, "ro rd.earlykdump", LOADED, loaded=True)
    assert any("is readable by other users" in ln for ln in cov.lines)
    reports: list[str] = []
    early._protect(initramfs, reports.append)
    assert initramfs.stat().st_mode & 0o777 == 0o600 and reports
    cov = early.assess(paths, "ro rd.earlykdump", LOADED, loaded=True)
    assert not any("readable by other users" in ln for ln in cov.lines)


@pytest.mark.parametrize(
    ("log", "why"),
    [
        ([LogLine(0.9, "kdumpy-early[9]: early-kdump is enabled."),
          LogLine(1.0, "kdumpy-early[9]: kexec: failed to load early-kdump kernel: "
                       "no memory reserved for crash kernel (crashkernel=)")],
         "kexec failed at 1.00 s: no memory reserved for crash kernel (crashkernel=)"),
        ([], "the early stage did not run: no early-kdump lines in the kernel log"),
        (LOADED[:1], "the early loader started but did not finish"),
        (LOADED, "it loaded the capture kernel at 1.50 s, but that kernel is no longer loaded"),
    ],
)  # fmt: skip
def test_start_warns_when_early_load_did_not_happen(log: list[LogLine], why: str) -> None:
    warning = early_state.missed_load_warning("ro rd.earlykdump", log)
    assert warning is not None
    assert warning.startswith("Warning: rd.earlykdump is on the kernel command line but early "
                              "kdump did not load the capture kernel at boot: ")  # fmt: skip
    assert why in warning


def test_start_is_quiet_without_rd_earlykdump() -> None:
    assert early_state.missed_load_warning("ro quiet", []) is None
    assert early_state.missed_load_warning("ro rd.earlykdump rd.earlykdump=0", []) is None
    assert early_state.start_warning(Path("/nonexistent/cmdline")) is None
