"""The systemd unit that loads the capture kernel at boot (kdump.service's twin)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.fileio import replace

UNIT_NAME = "kdumpy.service"
UNIT_DIR = Path("/etc/systemd/system")
TEMPLATE = Path(__file__).parent / "data" / UNIT_NAME


def kdumpy_command() -> str:
    """How systemd should run kdumpy: the installed script, else this interpreter -m kdumpy."""
    found = shutil.which("kdumpy")
    if found:
        return shlex.quote(os.path.realpath(found))
    return f"{shlex.quote(sys.executable)} -m kdumpy"


def render_unit() -> str:
    return TEMPLATE.read_text().replace("@KDUMPY@", kdumpy_command())


def install_unit(
    unit_dir: Path = UNIT_DIR, enable: bool = True, systemctl: bool = True
) -> list[str]:
    """Write the unit (atomically), then reload systemd and enable it; return what was done."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    dest = unit_dir / UNIT_NAME
    replace(dest, render_unit().encode(), 0o644)
    done = [f"wrote {dest}"]
    if not systemctl:
        return done
    if shutil.which("systemctl") is None:
        done.append("systemctl not found: enable the unit by hand")
        return done
    commands = [["systemctl", "daemon-reload"]]
    if enable:
        commands.append(["systemctl", "enable", UNIT_NAME])
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KdumpyError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        done.append("ran " + " ".join(cmd))
    return done
