"""What kdump needs to know of a machine (``uname -m``) beyond reading its dumps.

The crashkernel= defaults (kdump-utils 1.0.61's ``kdump_get_arch_recommend_crashkernel``
and what ``crashkernel=auto`` meant to a RHEL 8 kernel), the capture kernel's command-line
defaults (kdump-utils' ``gen-kdump-sysconfig.sh``), kexec-tools' arguments, the kexec
system call numbers and what cryptsetup needs in the capture kernel.  One
:class:`KdumpMachine` per machine, in ``kdumpy.arch.<machine>.kdump``; kdumpy reads dumps
of only some of them (:mod:`kdumpy.arch.select`), but its service configures all.
Standard library only: early kdump and the service import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True)
class Platform:
    """What a machine's default crashkernel= depends on beyond its RAM."""

    arch: str  # uname -m
    kernel_release: str = ""
    dump_mode: str = "kdump"  # or "fadump" (ppc64le)
    sme_sev: bool = False  # AMD memory encryption active
    mlx5: bool = False  # a Mellanox ConnectX (mlx5_core) driver is bound
    arm_smmu: bool = False  # an ARM SMMU is present
    nr_cpus: int = 1  # the capture kernel's CPUs (nr_cpus= in its command line)


def no_extra(platform: Platform) -> int:
    return 0


def memory_encryption_extra_mib(platform: Platform) -> int:
    """kdump-utils adds 64 MiB when AMD memory encryption (SME/SEV) is active (its bounce
    buffers), on x86_64 and s390x alike."""
    return 64 if platform.sme_sev else 0


@dataclass(frozen=True)
class KdumpMachine:
    """kdump's facts for one machine."""

    machine: str  # uname -m
    # kdump-utils' recommended crashkernel= ranges, and the MiB it adds for what the
    # machine has (None: kdump-utils has no default there).
    crashkernel_table: str | None = None
    crashkernel_extra_mib: Callable[[Platform], int] = no_extra
    # The table a RHEL 8 kernel used for crashkernel=auto (None: never defined there).
    crashkernel_auto: str | None = None
    # What the kernel reserves below 4G by itself when crashkernel= gives only ,high.
    crashkernel_default_low: int = 0
    # fadump's own crashkernel= table (ppc64le); None where fadump does not exist.
    fadump_table: str | None = None
    # The machine's part of KDUMP_COMMANDLINE_REMOVE / _APPEND and FADUMP_COMMANDLINE_APPEND.
    commandline_remove: str = "cma"
    commandline_append: str = "irqpoll maxcpus=1 reset_devices cma=0"
    fadump_append: str = ""
    kexec_args: str = ""  # KEXEC_ARGS in kdump-utils' template
    # System call numbers (None: kdumpy does not know them for this machine).
    sys_kexec_file_load: int | None = None
    sys_kexec_load: int | None = None
    # What cryptsetup needs to open a LUKS2 volume beside the keyslot's KDF memory.
    cryptsetup_overhead: int = 20 * MiB
    # Where the kernel command line is kept: "grub" or "zipl" (s390x).
    boot_config: str = "grub"
    # Whether the default depends on AMD SME/SEV (probe the kernel log for it).
    reads_sme_sev: bool = False

    @property
    def fadump(self) -> bool:
        """Whether firmware-assisted dump exists here (``fadump=`` on the command line)."""
        return self.fadump_table is not None


# A machine none of the records names: kdump-utils' "default" template entries.
GENERIC = KdumpMachine(machine="")
