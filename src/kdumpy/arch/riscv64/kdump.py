"""kdump's facts for RISC-V 64: see :mod:`kdumpy.arch.kdump`."""

from __future__ import annotations

from kdumpy.arch.kdump import KdumpMachine

RISCV64_KDUMP = KdumpMachine(machine="riscv64", sys_kexec_file_load=294, sys_kexec_load=104)
