"""drgn's answers for a lab dump, computed once in a subprocess and cached.

The cache lives in ``~/.cache/kdumpy/lab/derived/`` next to the lab's other derived
data, keyed by the dump's name, size and mtime so a re-captured dump is re-examined.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kdumpy.analysis.commands import Session, run_line
from kdumpy.lab.cache import cache_root, locked

ORACLE_SCRIPT = Path(__file__).with_name("drgn_oracle.py")
ORACLE_VERSION = 3  # bump when drgn_oracle.py's output changes


def dbg_vmlinux(kernel: Any) -> Path:
    """The DWARF vmlinux of a lab kernel.

    ``LabKernel.dbg_vmlinux()`` extracts ``/usr/lib/debug/boot/vmlinux-REL``; in newer
    Debian -dbg packages that is a relative symlink to ``lib/modules/REL/vmlinux``,
    which the extraction leaves dangling.  Then the real file is extracted here.
    """
    path = Path(kernel.dbg_vmlinux())
    if path.exists():
        return path
    out = cache_root() / "derived" / "dbg" / kernel.release / "vmlinux"
    if out.exists():
        return out
    from kdumpy.lab.kernels import AptSuite

    with locked(f"analysis-dbg-{kernel.release}"):
        if not out.exists():
            work = out.parent / "work"
            work.mkdir(parents=True, exist_ok=True)
            deb = AptSuite(kernel.suite, kernel.arch).download(f"{kernel.package}-dbg", work)
            member = f"./usr/lib/debug/lib/modules/{kernel.release}/vmlinux"
            pipe = f"dpkg --fsys-tarfile {deb} | tar -x -C {work} {member}"
            subprocess.run(["sh", "-c", pipe], check=True)
            Path(work, member).rename(out)
            deb.unlink()
    return out


def drgn_answers(
    dump: Any, script: Path = ORACLE_SCRIPT, tag: str = f"drgn{ORACLE_VERSION}"
) -> dict[str, Any]:
    """The drgn oracle's JSON for a :class:`kdumpy.lab.dumps.LabDump` (``script`` and
    ``tag`` name another oracle script and its cache files)."""
    vmcore = Path(dump.vmcore)
    st = vmcore.stat()
    out = cache_root() / "derived" / f"{vmcore.name}-{st.st_size}-{int(st.st_mtime)}.{tag}.json"
    if not out.exists():
        vmlinux = dbg_vmlinux(dump.kernel)
        with locked(f"drgn-{vmcore.name}"):
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp")
                subprocess.run(
                    [sys.executable, str(script), str(vmcore), str(vmlinux), str(tmp)],
                    check=True,
                    timeout=1800,
                )
                tmp.rename(out)
    return json.loads(out.read_text())


def both(session: Session, drgn: dict, key: str) -> tuple[str, str]:
    """kdumpy's and drgn's output for the oracle's command line ``key``."""
    if key not in drgn:
        pytest.skip(f"{key}: not on this kernel")
    answer = drgn[key]
    if "error" in answer:
        pytest.skip(f"drgn cannot run {answer['line']!r} here: {answer['error']}")
    ours = run_line(session, answer["line"])
    assert not session.failed, ours
    return ours, answer["out"]
