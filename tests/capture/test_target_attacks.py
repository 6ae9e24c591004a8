"""Issue 17's attacks on the capture side's local target, run as the attacker would.

The capture runs as ``python3 -m kdumpy.capture`` (``--target-dir`` for the mount /init
makes, ``--no-action`` for the reboot), as root, into a real directory tree whose
``var/crash`` is 1777 like Ubuntu's.  The attacker is the real ``nobody``.  The dump is a
small file of known bytes saved by ``cp`` (a collector kdump.conf allows): what is checked
is where files land and who can reach them, not the dump format (tests/capture's other
files save real dumps).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from unprivileged import isolated, need_root, nobody_sh, shared_dir

from kdumpy.capture import layout

from .helpers import run_capture

DUMP = b"KDUMPY-TEST-DUMP\n" * 64
PRECIOUS = b"root's precious file\n"


def _conf(tmp_path: Path, path: str = "/var/crash") -> Path:
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"ext4 LABEL=kdumptgt\npath {path}\ncore_collector cp\nfinal_action poweroff\n")
    return conf


@pytest.fixture
def target(tmp_path):
    """A target root (0755, root's) whose var/crash is world-writable and sticky."""
    need_root()
    with shared_dir(0o755) as base:
        root = base / "target"
        crash = root / "var" / "crash"
        crash.mkdir(parents=True)
        crash.chmod(0o1777)
        yield root


@pytest.fixture
def vmcore(tmp_path) -> Path:
    path = tmp_path / "vmcore"
    path.write_bytes(DUMP)
    return path


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(PRECIOUS)
    path.chmod(0o600)
    return path


def _root_dirs(crash: Path) -> list[Path]:
    return [p for p in crash.iterdir() if p.lstat().st_uid == 0]


def test_planted_symlinks_in_the_next_dump_directories(tmp_path, target, vmcore, victim):
    """Finding 1: nobody pre-creates the ``<ip>-<date>`` directories of the next seconds in
    the 1777 path and plants every name the capture writes as a symlink to a root file.
    The capture must neither reuse those directories nor follow the links."""
    crash = target / "var" / "crash"
    now = int(time.time())
    planted = [crash / layout.dump_dir_name("127.0.0.1", when=t) for t in range(now - 2, now + 60)]
    names = [layout.DMESG_INCOMPLETE, layout.VMCORE_INCOMPLETE, layout.VMCORE, layout.KEXEC_LOG]
    script = "".join(
        f"mkdir -m 0777 '{d}' && " + "".join(f"ln -s '{victim}' '{d}/{n}' && " for n in names)
        for d in planted
    )
    assert nobody_sh(script + "true").returncode == 0
    run = run_capture(_conf(tmp_path), vmcore, "--target-dir", str(target))
    assert run.returncode == 0, run.stderr
    assert victim.read_bytes() == PRECIOUS
    for d in planted:  # the attacker's directories are as they left them
        assert sorted(p.name for p in d.iterdir()) == sorted(names)
        assert all(p.is_symlink() for p in d.iterdir())
    (dump_dir,) = _root_dirs(crash)
    assert dump_dir.name.endswith("-1") and Path(str(dump_dir)[:-2]) in planted
    assert "exists: saving to" in run.stderr
    info = dump_dir.lstat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert (dump_dir / "vmcore").read_bytes() == DUMP
    for path in dump_dir.iterdir():
        info = path.lstat()
        assert stat.S_ISREG(info.st_mode) and info.st_uid == 0, path
        assert stat.S_IMODE(info.st_mode) == 0o600, path


def test_a_directory_prepared_for_a_kdump_test_is_not_reused(tmp_path, target, vmcore, victim):
    """The ``kdump-test-<id>`` name is known in advance: nobody's directory there is left
    alone and the status file is not written through their symlink."""
    crash = target / "var" / "crash"
    prepared = crash / "kdump-test-1700000000-7"
    status = prepared / layout.TEST_STATUS
    assert nobody_sh(f"mkdir -m 0777 '{prepared}' && ln -s '{victim}' '{status}'").returncode == 0
    run = run_capture(_conf(tmp_path), vmcore, "--target-dir", str(target),
                      "--cmdline", "kdump_test_id=1700000000-7")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert victim.read_bytes() == PRECIOUS and status.is_symlink()
    (dump_dir,) = _root_dirs(crash)
    assert dump_dir.name == "kdump-test-1700000000-7-1"
    assert (dump_dir / layout.TEST_STATUS).read_text() == "success\n"


@pytest.mark.parametrize("path", ["/../outside", "/var/crash/../../../outside"])
def test_path_with_dotdot_stays_on_the_target(tmp_path, target, vmcore, path):
    """Finding 8: ``..`` in ``path`` would leave the target (in the capture kernel: into
    the initramfs's RAM, and the dump is lost).  Refused as a target failure."""
    run = run_capture(_conf(tmp_path, path), vmcore, "--target-dir", str(target))
    assert not (target.parent / "outside").exists()
    assert run.returncode == 1
    assert f"path {path} leaves the target" in run.stderr
    assert "failure_action reboot" in run.stderr and "would reboot" in run.stderr


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_symlink_in_path_is_not_followed(tmp_path, target, vmcore, link):
    """A symbolic link among ``path``'s directories could lead anywhere (an absolute one,
    in the capture kernel, into RAM): the capture refuses it and saves nothing there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = str(elsewhere) if link == "absolute" else os.path.relpath(elsewhere, target / "var")
    (target / "var" / "dumps").symlink_to(dest)
    run = run_capture(_conf(tmp_path, "/var/dumps"), vmcore, "--target-dir", str(target))
    assert run.returncode == 1
    assert f"{target}/var/dumps is a symbolic link or not a directory" in run.stderr
    assert list(elsewhere.iterdir()) == []


def test_missing_path_directories_are_created_private(tmp_path, target, vmcore):
    run = run_capture(_conf(tmp_path, "/var/crash/new/sub"), vmcore, "--target-dir", str(target))
    assert run.returncode == 0, run.stderr
    for d in (target / "var/crash/new", target / "var/crash/new/sub"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700 and d.stat().st_uid == 0
    (dump_dir,) = (target / "var/crash/new/sub").iterdir()
    assert (dump_dir / "vmcore").read_bytes() == DUMP


def _stubs(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """reboot/halt/poweroff that only record their call, first on PATH."""
    bin_dir, called = tmp_path / "bin", tmp_path / "called"
    bin_dir.mkdir()
    for name in ("reboot", "halt", "poweroff"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {called}\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, called


def _save_on_this_machine(
    tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """``kdumpy save`` on this (running) machine, with reboot & co. stubbed on PATH and
    /proc/sysrq-trigger replaced by a plain file in a private mount namespace: even the
    old code's reboot cannot reach the machine."""
    env, called = _stubs(tmp_path)
    sysrq = tmp_path / "sysrq-trigger"
    sysrq.write_text("")
    setup = f"[ ! -e /proc/sysrq-trigger ] || mount --bind {sysrq} /proc/sysrq-trigger"
    argv = [sys.executable, "-m", "kdumpy", "save", *args]
    return isolated(setup, argv, env=env, timeout=120), called, sysrq


def test_save_on_a_running_machine_refuses(tmp_path):
    """Finding 4: a mistyped --config on a running machine meant ``reboot -f``, then
    SysRq-b.  Outside a capture kernel ``save`` now refuses before anything else."""
    proc, called, sysrq = _save_on_this_machine(tmp_path, "--config", str(tmp_path / "typo.conf"))
    assert not called.exists(), called.read_text()
    assert sysrq.read_text() == ""
    assert proc.returncode == 2
    assert "not a capture kernel" in proc.stderr and "--no-action" in proc.stderr


def test_save_force_still_carries_out_the_action(tmp_path):
    """--force (what /init passes) keeps kdump-utils' behaviour: failure_action reboot."""
    proc, called, sysrq = _save_on_this_machine(
        tmp_path, "--force", "--config", str(tmp_path / "typo.conf")
    )
    assert called.read_text() == "reboot -f\n"
    assert sysrq.read_text() == "b" or not Path("/proc/sysrq-trigger").exists()
    assert proc.returncode == 1
