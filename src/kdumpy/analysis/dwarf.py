"""Types from a vmlinux's DWARF, for kernels whose dump carries no BTF.

RHEL 8.0/8.1, SLES 15 SP3, Ubuntu 20.04's 5.4 and custom builds have no
``CONFIG_DEBUG_INFO_BTF``; their -debuginfo vmlinux has DWARF.  pahole (package
``dwarves``) turns that DWARF into BTF once (about 25 s and 370 MB for a Debian 5.10
vmlinux); the result is cached by the vmlinux's build id, so later runs read types as
fast as from a dump's own BTF.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from kdumpy.errors import KdumpyError


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kdumpy" / "btf"


def btf_from_dwarf(vmlinux: str, build_id: str | None) -> bytes:
    """BTF encoded from ``vmlinux``'s DWARF by pahole, cached by build id."""
    cached = cache_dir() / f"{build_id}.btf" if build_id else None
    if cached is not None and cached.is_file() and not cached.is_symlink():
        return cached.read_bytes()
    pahole = shutil.which("pahole")
    if pahole is None:
        raise KdumpyError(
            f"{vmlinux}: the dump has no BTF, and reading the vmlinux's DWARF needs pahole "
            "(install dwarves)"
        )
    with tempfile.TemporaryDirectory(prefix="kdumpy-btf-") as tmp:
        out = Path(tmp, "vmlinux.btf")
        try:
            proc = subprocess.run(
                [pahole, f"--btf_encode_detached={out}", "--", vmlinux],
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except subprocess.TimeoutExpired:
            raise KdumpyError(f"{vmlinux}: pahole took too long to read its DWARF") from None
        if proc.returncode != 0 or not out.is_file():
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()] or ["no output"]
            raise KdumpyError(f"{vmlinux}: pahole could not read its DWARF: {lines[-1][:200]}")
        data = out.read_bytes()
    if cached is not None:
        _store(cached, data)
    return data


def _store(path: Path, data: bytes) -> None:
    """Write the cache file 0600, under a temporary name in our own directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".btf-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
