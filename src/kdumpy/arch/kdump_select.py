"""Which :class:`~kdumpy.arch.kdump.KdumpMachine` a machine name (``uname -m``) has.

Standard library only (see :mod:`kdumpy.arch.kdump`).
"""

from __future__ import annotations

import os

from kdumpy.arch.arm64.kdump import ARM64_KDUMP
from kdumpy.arch.kdump import GENERIC, KdumpMachine, Platform
from kdumpy.arch.ppc64le.kdump import PPC64_KDUMP, PPC64LE_KDUMP
from kdumpy.arch.riscv64.kdump import RISCV64_KDUMP
from kdumpy.arch.s390x.kdump import S390X_KDUMP
from kdumpy.arch.x86_64.kdump import I386_KDUMP, X86_64_KDUMP

__all__ = ["KDUMP_MACHINES", "KdumpMachine", "Platform", "kdump_machine", "this_machine"]

KDUMP_MACHINES = {
    m.machine: m
    for m in (X86_64_KDUMP, I386_KDUMP, ARM64_KDUMP, PPC64LE_KDUMP, PPC64_KDUMP, S390X_KDUMP,
              RISCV64_KDUMP)
}  # fmt: skip


def kdump_machine(machine: str) -> KdumpMachine:
    """The record of ``uname -m`` = *machine*; the generic one for a machine not listed
    (kdump-utils' "default" template: no crashkernel default, no syscall numbers)."""
    return KDUMP_MACHINES.get(machine, GENERIC)


def this_machine() -> KdumpMachine:
    """The record of the machine kdumpy runs on."""
    return kdump_machine(os.uname().machine)
