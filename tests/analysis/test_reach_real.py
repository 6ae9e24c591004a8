"""Reach on real kernels: kallsyms found by scanning each lab kernel's image in its dump.

The oracle is binutils' ``nm`` on Debian's -dbg vmlinux of the same build, moved by the
dump's KERNELOFFSET (KASLR): every symbol the scan finds must be there, at that address.
Linux 5.10 (Debian 11) exports no kallsyms in VMCOREINFO, so the scan is its only way;
on 6.0+ the scan must also equal what VMCOREINFO points at.
"""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from kdumpy.analysis.kallsyms import Kallsyms
from kdumpy.analysis.kallsyms_scan import kallsyms_from_image
from kdumpy.analysis.memory import KernelMemory
from kdumpy.vmcore import open_dump

pytestmark = pytest.mark.vm


def nm_symbols(vmlinux) -> dict[tuple[str, int], str]:
    """``(name, link address) -> type`` from ``nm``."""
    out = subprocess.run(["nm", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[(parts[2], int(parts[0], 16))] = parts[1]
    return table


def test_scanned_kallsyms_match_nm_of_the_dbg_vmlinux(lab_dump):
    with open_dump(lab_dump.vmcore) as dump:
        info = dump.vmcoreinfo
        start = time.perf_counter()
        k = kallsyms_from_image(dump.read_phys, dump.translator.vtop, info)
        elapsed = time.perf_counter() - start
        if info.symbol("kallsyms_names") is not None:
            ref = Kallsyms.from_vmcoreinfo(info, KernelMemory(dump).read)
            assert k.names == ref.names
            assert np.array_equal(k.addresses, ref.addresses)
        offset = int(info.get("KERNELOFFSET") or "0", 16)
    assert elapsed < 2.0, f"scan took {elapsed:.2f} s"  # 0.3 s measured; a loaded host
    nm = nm_symbols(lab_dump.kernel.dbg_vmlinux())
    assert len(k) > 50_000
    missing = []
    for name, kind, addr in zip(k.names, k.types, k.addresses.tolist(), strict=True):
        link = addr if addr < 1 << 63 else addr - offset  # per-CPU offsets do not move
        if (name, link) not in nm:
            missing.append(f"{kind} {name} {addr:#x}")
    assert not missing[:20], f"{len(missing)} of {len(k)} not in nm"
