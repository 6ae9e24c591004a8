"""kdumpy.service, the systemd unit: checked by systemd-analyze verify."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.service.unit import install_unit, render_unit


def test_unit_content() -> None:
    text = render_unit()
    assert "ExecCondition=/bin/sh -c 'grep -q -e \"crashkernel\" /proc/cmdline'" in text
    assert "\nExecStart=" in text and text.split("ExecStart=")[1].split("\n")[0].endswith("start")
    assert "RemainAfterExit=yes" in text and "WantedBy=multi-user.target" in text
    assert "@KDUMPY@" not in text


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    done = install_unit(tmp_path, enable=False, systemctl=False)
    unit = tmp_path / "kdumpy.service"
    assert done == [f"wrote {unit}"] and oct(unit.stat().st_mode & 0o777) == "0o644"
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "kdumpy.service" not in proc.stderr, proc.stderr
