"""The makedumpfile/kernel check: which configurations warn, read from this machine's real
makedumpfile (its Debian package version is the oracle) and from chosen versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.service import collectorcheck


def _fixed(version: tuple[int, int, int] | None):
    return lambda program: version


@pytest.mark.parametrize(
    ("argv", "release", "version", "warns"),
    [
        (["makedumpfile", "-l", "-d", "31"], "6.12.43+deb13-amd64", (1, 7, 2), True),
        (["makedumpfile", "-l", "-d31"], "7.0.1-amd64", (1, 7, 6), True),
        (["makedumpfile", "-c", "-d", "16"], "6.12.0", (1, 7, 6), True),  # free pages alone
        (["makedumpfile", "-c", "-d", "8,31"], "6.12.0", (1, 7, 2), True),  # user pages first
        (["makedumpfile", "-l", "-d", "31"], "6.12.43+deb13-amd64", (1, 7, 7), False),
        (["makedumpfile", "-l", "-d", "31"], "6.11.9", (1, 7, 2), False),  # flags, still
        (["makedumpfile", "-l", "-d", "1"], "6.12.0", (1, 7, 2), False),  # zero pages only
        (["makedumpfile", "-l", "-d", "7"], "6.12.0", (1, 7, 2), False),  # no type needed
        (["makedumpfile", "-l"], "6.12.0", (1, 7, 2), False),  # makedumpfile's default: -d 0
        (["makedumpfile", "-l", "-d", "31"], "6.12.0", None, False),  # not installed here
        (["makedumpfile", "-l", "-d", "31"], "vmlinuz-custom", (1, 7, 2), False),
        (["makedumpfile", "-l", "-d", "junk"], "6.12.0", (1, 7, 2), False),  # config's job
    ],
)
def test_which_configurations_warn(argv, release, version, warns) -> None:
    warning = collectorcheck.collector_warning(argv, release, _fixed(version))
    assert (warning is not None) == warns
    if warns:
        assert warning.startswith("core_collector: makedumpfile ")
        assert "1.7.7" in warning and "kdumpy collect" in warning and "\n" not in warning


def _debian_version() -> tuple[int, int, int] | None:
    """makedumpfile's version from dpkg (an epoch-prefixed '1:1.7.2-1')."""
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "makedumpfile"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    match = re.match(r"(?:\d+:)?(\d+)\.(\d+)\.(\d+)", proc.stdout)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def test_the_installed_makedumpfile_reports_its_package_version() -> None:
    if shutil.which("makedumpfile") is None or _debian_version() is None:
        pytest.skip("makedumpfile is not installed from a Debian package here")
    assert collectorcheck.makedumpfile_version("makedumpfile") == _debian_version()


def test_a_missing_program_has_no_version() -> None:
    assert collectorcheck.makedumpfile_version("no-such-makedumpfile-here") is None


def test_config_check_warns_for_this_machines_kernel(tmp_path: Path) -> None:
    """``kdumpy config check`` on this machine: the warning appears exactly when the running
    kernel stores page types as values and the installed makedumpfile predates 1.7.7."""
    version = _debian_version()
    if shutil.which("makedumpfile") is None or version is None:
        pytest.skip("makedumpfile is not installed from a Debian package here")
    kernel = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    expected = kernel >= (6, 12) and version < (1, 7, 7)
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"path {tmp_path}\ncore_collector makedumpfile -l --message-level 7 -d 31\n")
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "config", "check", str(conf)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "core_collector: makedumpfile" in line]
    assert len(warned) == (1 if expected else 0), proc.stderr
