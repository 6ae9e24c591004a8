"""The default ``crashkernel=`` value, as kdump-utils 1.0.61 computes it.

``kdump_get_arch_recommend_crashkernel`` in kdump-lib.sh: a range table per architecture
plus MiB added to every range for what the machine has (the tables and additions are the
architecture layer's: ``kdumpy.arch.<machine>.kdump``):

* x86_64, s390x: ``2G-64G:256M,64G-:512M``; +64M when AMD memory encryption (SME/SEV) is
  active (the kernel log says "Memory Encryption Features active: AMD SME" or "... AMD SEV");
* aarch64: ``2G-4G:256M,4G-64G:320M,64G-:576M``; a 64K-page kernel (its release contains
  "64k") +100M, +384M more with an ARM SMMU and +200M with mlx5; a 4K kernel +150M with mlx5;
* ppc64le: ``2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,128G-:4G`` (fadump: its own
  table), +1M per capture CPU (``nr_cpus=`` in KDUMP_COMMANDLINE_APPEND, default 1).

``crashkernel=auto`` is what RHEL 8 kernels accepted instead: the kernel picked from its
own table (``crashkernel_auto``, from the RHEL 8 kernel's crash_core.c as posted upstream in
2021).
No kernel since accepts it, so kdumpy replaces it by the explicit default.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from kdumpy.arch.kdump_select import Platform, kdump_machine
from kdumpy.kmsg import read_kmsg
from kdumpy.service.crashkernel import CrashkernelError, crashkernel_add

# The only lines kdump-utils counts (journalctl --dmesg --grep, anchored at both ends).
SME_SEV = re.compile(r"Memory Encryption Features active: AMD (SME|SEV)")


def default_crashkernel(platform: Platform) -> str:
    """The crashkernel= value kdump-utils would write for this platform (the machine's table
    from :mod:`kdumpy.arch`, fadump's on ppc64le, plus the MiB its features add)."""
    machine = kdump_machine(platform.arch)
    table = machine.crashkernel_table
    if platform.dump_mode == "fadump" and machine.fadump_table:
        table = machine.fadump_table
    if table is None:
        raise CrashkernelError(f"kdump-utils has no default crashkernel for {platform.arch}")
    return crashkernel_add(table, f"{machine.crashkernel_extra_mib(platform)}M")


def auto_table(arch: str, dump_mode: str = "kdump") -> str:
    """The table a RHEL 8 kernel used for crashkernel=auto (fadump= on ppc64 picks its own)."""
    machine = kdump_machine(arch)
    if dump_mode == "fadump" and machine.fadump_table:
        return machine.fadump_table
    if machine.crashkernel_auto is None:
        raise CrashkernelError(f"crashkernel=auto was never defined for {arch}")
    return machine.crashkernel_auto


def nr_cpus(append: str) -> int:
    """kdump-utils' find_nr_cpus: the last ``nr_cpus=<positive integer>`` word, else 1."""
    found = 1
    for word in append.split():
        name, _, value = word.partition("=")
        if name == "nr_cpus" and re.fullmatch(r"[1-9][0-9]*", value):
            found = int(value)
    return found


def sme_sev_active() -> bool:
    """Whether this boot's kernel log says AMD SME or SEV is active.

    kdump-utils asks the journal (it keeps the line after the ring buffer wraps); without
    journalctl the kernel's ring buffer is read directly.
    """
    if shutil.which("journalctl"):
        proc = subprocess.run(
            ["journalctl", "-q", "--dmesg", "--grep", f"^{SME_SEV.pattern}$"],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            return True
    return any(SME_SEV.fullmatch(record.partition(";")[2]) for record in read_kmsg())


def fadump_enabled(sysfs: Path = Path("/sys/kernel/fadump/enabled")) -> bool:
    try:
        return sysfs.read_text().strip() == "1"
    except OSError:
        return False


def probe(kernel_release: str = "", append: str = "", dump_mode: str | None = None) -> Platform:
    """This machine's Platform (``append``: KDUMP_COMMANDLINE_APPEND or, for fadump,
    FADUMP_COMMANDLINE_APPEND)."""
    arch = os.uname().machine
    return Platform(
        arch=arch,
        kernel_release=kernel_release or os.uname().release,
        dump_mode=dump_mode or ("fadump" if fadump_enabled() else "kdump"),
        sme_sev=kdump_machine(arch).reads_sme_sev and sme_sev_active(),
        mlx5=os.path.isdir("/sys/bus/pci/drivers/mlx5_core"),
        arm_smmu=bool(glob.glob("/sys/devices/platform/arm-smmu-*")),
        nr_cpus=nr_cpus(append),
    )
