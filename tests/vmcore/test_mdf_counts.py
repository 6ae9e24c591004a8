"""The pages kdumpy finds in makedumpfile's output are exactly as many as makedumpfile
says it kept: the oracle is makedumpfile's own report (``--message-level 31``), not our
reading of its bitmaps.

makedumpfile counts ``Original pages`` per PT_LOAD, so the kernel-text PT_LOAD that
repeats part of the direct map is counted twice; the overlap is computed here from the
program headers with pyelftools (an independent ELF parser).  Zero pages are counted as
excluded in the report but keep a descriptor (the shared zero page) in kdump-compressed
files, so they read back as present.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.vmcore import open_dump

from .conftest import derived_dir

pytestmark = pytest.mark.vm

_COUNTERS = {
    "original": r"Original pages\s*:\s*0x([0-9a-f]+)",
    "remaining": r"Remaining pages\s*:\s*0x([0-9a-f]+)",
    "zero": r"Pages filled with zero\s*:\s*0x([0-9a-f]+)",
    "total": r"Total pages\s*:\s*0x([0-9a-f]+)",
}


def _run_with_report(vmcore: Path, level: int) -> tuple[Path, dict[str, int]]:
    """makedumpfile -l -d LEVEL with its report, cached beside the other derived files."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    d = derived_dir(vmcore)
    out, report = d / f"counts-l-d{level}", d / f"counts-l-d{level}.report"
    if not (out.exists() and report.exists()):
        tmp = out.with_name(out.name + ".tmp")
        tmp.unlink(missing_ok=True)
        args = ["-l", "-d", str(level), "--message-level", "31", str(vmcore), str(tmp)]
        proc = subprocess.run(
            ["makedumpfile", *args],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            pytest.skip(f"makedumpfile -d {level} failed on {vmcore.name}: {proc.stderr[-200:]}")
        report.write_text(proc.stdout + proc.stderr)
        tmp.rename(out)
    text = report.read_text()
    counts = {}
    for name, pattern in _COUNTERS.items():
        m = re.search(pattern, text)
        counts[name] = int(m.group(1), 16) if m else 0
    if not counts["original"]:
        pytest.skip("makedumpfile printed no page report")
    return out, counts


def _segment_pages(vmcore: Path) -> tuple[int, int]:
    """(sum of per-PT_LOAD page counts, pages of their union), as makedumpfile counts a
    segment: ``[paddr >> 12, (paddr + memsz) >> 12)``."""
    from elftools.elf.elffile import ELFFile

    with open(vmcore, "rb") as f:
        ranges = [
            (s["p_paddr"] >> 12, (s["p_paddr"] + s["p_memsz"]) >> 12)
            for s in ELFFile(f).iter_segments()
            if s["p_type"] == "PT_LOAD"
        ]
    total = sum(b - a for a, b in ranges)
    union, end = 0, 0
    for a, b in sorted(ranges):
        a = max(a, end)
        if b > a:
            union += b - a
            end = b
    return total, union


@pytest.mark.parametrize("level", [0, 1, 31])
def test_present_pages_match_makedumpfile_report(lab_dump, level: int) -> None:  # noqa: ANN001
    out, counts = _run_with_report(lab_dump.vmcore, level)
    per_segment, union = _segment_pages(lab_dump.vmcore)
    assert counts["original"] == per_segment  # the report counts PT_LOADs one by one
    with open_dump(out) as dump:
        assert dump.max_pfn == counts["total"]
        assert sum(e - s for s, e in dump.ram_ranges()) == union
        present = sum(e - s for s, e in dump.pfn_ranges())
    expected = counts["remaining"] + counts["zero"] - (per_segment - union)
    assert present == expected, (hex(present), {k: hex(v) for k, v in counts.items()})
