"""``kdumpy test``'s record: a pending test in /var/lib/kdumpy, its result read on next boot.

As in kdump-utils: ``test`` writes ``pending kdump_test_id=<id>`` and reloads with
``kdump_test_id=<id>`` on the capture command line; the capture side saves into
``<path>/kdump-test-<id>/`` and writes ``vmcore-creation.status`` there ("fail" when it
starts, "success" at the end).  The next ``start``/``status`` looks for that file.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.fileio import private_dir, replace
from kdumpy.service import targets
from kdumpy.service.config import KdumpConfig
from kdumpy.service.paths import ServicePaths
from kdumpy.service.sshopts import client_options

STATUS_NAME = "vmcore-creation.status"


@dataclass(frozen=True)
class TestStatus:
    state: str  # "", "pending", "success", "fail", "manual"
    test_id: str = ""
    when: str = ""
    boot_id: str = ""  # the boot that armed the test: another boot means it crashed


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def new_test_id() -> str:
    """``<epoch seconds>-<nanoseconds>``, kdump-utils' form."""
    now = time.time_ns()
    return f"{now // 10**9}-{now % 10**9}"


def read(paths: ServicePaths) -> TestStatus:
    try:
        words = paths.test_status.read_text().split()
    except FileNotFoundError:
        return TestStatus("")
    state = words[0] if words else ""
    fields = dict(w.partition("=")[::2] for w in words[1:] if "=" in w)
    when = " ".join(w for w in words[1:] if "=" not in w)
    return TestStatus(state, fields.get("kdump_test_id", ""), when, fields.get("boot_id", ""))


def write(paths: ServicePaths, status: TestStatus) -> None:
    private_dir(paths.state_dir)
    line = f"{status.state} kdump_test_id={status.test_id} boot_id={status.boot_id} {status.when}"
    replace(paths.test_status, (line.strip() + "\n").encode())


def cmdline_extra(paths: ServicePaths) -> list[str]:
    """``kdump_test_id=<id>`` while a test is pending."""
    status = read(paths)
    return [f"kdump_test_id={status.test_id}"] if status.state == "pending" else []


@contextlib.contextmanager
def target_path(config: KdumpConfig) -> Iterator[Path | None]:
    """Where the target's ``path`` is visible from this kernel: directly (no target, or
    the target is mounted), else the target's filesystem mounted read-only just for the
    look, as kdumpctl does.  None for ssh/raw/NFS targets or when mounting fails."""
    if config.target is None:
        yield Path(config.path)
        return
    if not config.target.is_fs:
        yield None
        return
    try:
        node = targets.device_node(config.target.spec)
    except KdumpyError:
        yield None
        return
    rel = config.path.lstrip("/")
    for m in targets.mounts():
        if os.path.realpath(m.source) == node:
            yield Path(m.mountpoint) / rel
            return
    with tempfile.TemporaryDirectory(prefix="kdumpy-target-") as tmp:
        cmd = ["mount", "-o", "ro", "-t", config.target.kind, node, tmp]
        if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
            yield None
            return
        try:
            yield Path(tmp) / rel
        finally:
            subprocess.run(["umount", tmp], capture_output=True, check=False)


def read_result(config: KdumpConfig, test_id: str) -> tuple[str, float] | None:
    """The test dump's status ("success"/"fail", or "" when there is no file) and the
    file's mtime; None when the target cannot be looked at from here."""
    if config.target is not None and config.target.kind == "ssh":
        return ssh_result(config, test_id)
    with target_path(config) as base:
        if base is None:
            return None
        found = base / f"kdump-test-{test_id}" / STATUS_NAME
        if not found.exists():
            return "", 0.0
        return found.read_text().strip() or "fail", found.stat().st_mtime


def ssh_result(config: KdumpConfig, test_id: str) -> tuple[str, float] | None:
    """The status file read from the ssh target with the dump key (as kdumpctl fetches it
    with scp); None when the server cannot be reached or refuses the key or host key."""
    assert config.target is not None
    if not Path(config.sshkey).exists():
        return None  # no key, no login (kdumpy propagate makes one)
    directory = shlex.quote(f"{config.path.rstrip('/')}/kdump-test-{test_id}")
    # Prints the file's mtime, then its contents; nothing when there is no such file.
    remote = f"cd -- {directory} 2>/dev/null && stat -c %Y {STATUS_NAME} && cat {STATUS_NAME}"
    cmd = ["ssh", *client_options(config.sshkey), "-o", "ConnectTimeout=20",
           "--", config.target.spec, remote]  # fmt: skip
    try:
        # Generous past the connect: a slow machine (or an emulated one, as in the lab)
        # may take a minute for the key exchange alone; an unreachable one fails at connect.
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode == 255:  # ssh's own failure: network, key or host key
        return None
    mtime, _, content = proc.stdout.partition("\n")
    if proc.returncode != 0 or not mtime.strip().isdigit():
        return "", 0.0
    return content.strip() or "fail", float(mtime)


def report_result(paths: ServicePaths, config: KdumpConfig, report: Callable[[str], None]) -> None:
    """Resolve a pending test from the dump it left, and report the last result."""
    status = read(paths)
    if status.state == "pending":
        result = read_result(config, status.test_id)
        if result is None:
            status = TestStatus("manual", status.test_id)
        elif result[0]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result[1]))
            state = "success" if result[0] == "success" else "fail"
            status = TestStatus(state, status.test_id, when)
            write(paths, status)
        elif status.boot_id and status.boot_id == boot_id():
            return  # armed in this boot: the test crash has not happened yet
        else:
            status = TestStatus("fail", status.test_id, "(no dump found)")
            write(paths, status)
    if status.state == "success":
        report(f"Notice: Last successful vmcore creation test on {status.when}")
    elif status.state == "fail":
        report(f"Notice: Last NOT successful vmcore creation test on {status.when}")
    elif status.state == "manual":
        report(
            "Notice: Require manual check of the last vmcore creation test (remote or raw target)"
        )
