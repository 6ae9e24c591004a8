"""Shared libraries an ELF binary needs, as the dynamic loader resolves them (``ldd``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kdumpy.errors import KdumpyError


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of the libraries (and the loader) ``binary`` needs; [] if static."""
    if not is_elf(binary):
        return []
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if proc.returncode != 0:
        raise KdumpyError(f"{binary}: ldd failed: {text.strip()}")
    libs: list[str] = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise KdumpyError(f"{binary}: needs {line.split()[0]}, which is not installed")
        if "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
        else:
            path = line.split("(")[0].strip()
        if path.startswith("/"):
            libs.append(path)
    return libs
