"""``kdumpy test``'s record: a pending test in /var/lib/kdumpy, its result read on next boot.

As in kdump-utils: ``test`` writes ``pending kdump_test_id=<id>`` and reloads with
``kdump_test_id=<id>`` on the capture command line; the capture side saves into
``<path>/kdump-test-<id>/`` and writes ``vmcore-creation.status`` there ("fail" when it
starts, "success" at the end).  The next ``start``/``status`` looks for that file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service import targets
from kdumpy.service.config import KdumpConfig
from kdumpy.service.paths import ServicePaths

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
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.test_status.with_name(STATUS_NAME + ".tmp")
    line = f"{status.state} kdump_test_id={status.test_id} boot_id={status.boot_id} {status.when}"
    tmp.write_text(line.strip() + "\n")
    tmp.replace(paths.test_status)


def cmdline_extra(paths: ServicePaths) -> list[str]:
    """``kdump_test_id=<id>`` while a test is pending."""
    status = read(paths)
    return [f"kdump_test_id={status.test_id}"] if status.state == "pending" else []


def result_file(config: KdumpConfig, test_id: str) -> Path | None:
    """Where the test dump's status file is visible from this kernel, if it is."""
    sub = f"kdump-test-{test_id}/{STATUS_NAME}"
    if config.target is None:
        return Path(config.path) / sub
    if config.target.is_fs:
        try:
            node = targets.device_node(config.target.spec)
        except KdumpyError:
            return None
        for m in targets.mounts():
            if os.path.realpath(m.source) == node:
                return Path(m.mountpoint) / config.path.lstrip("/") / sub
    return None


def report_result(paths: ServicePaths, config: KdumpConfig, report: Callable[[str], None]) -> None:
    """Resolve a pending test from the dump it left, and report the last result."""
    status = read(paths)
    if status.state == "pending":
        found = result_file(config, status.test_id)
        if found is None:
            status = TestStatus("manual", status.test_id)
        elif found.exists():
            result = found.read_text().strip() or "fail"
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found.stat().st_mtime))
            status = TestStatus("success" if result == "success" else "fail", status.test_id, when)
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
