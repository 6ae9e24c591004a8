"""kdump's facts for x86_64 (and i386's command-line template): see :mod:`kdumpy.arch.kdump`."""

from __future__ import annotations

from kdumpy.arch.kdump import KdumpMachine, MiB, memory_encryption_extra_mib

X86_64_KDUMP = KdumpMachine(
    machine="x86_64",
    crashkernel_table="2G-64G:256M,64G-:512M",
    crashkernel_extra_mib=memory_encryption_extra_mib,
    crashkernel_auto="1G-4G:160M,4G-64G:192M,64G-1T:256M,1T-:512M",
    crashkernel_default_low=256 * MiB,  # at least; more when swiotlb is larger
    commandline_append="irqpoll nr_cpus=1 reset_devices cgroup_disable=memory mce=off numa=off "
    "udev.children-max=2 panic=10 acpi_no_memhotplug transparent_hugepage=never nokaslr "
    "hest_disable cma=0 pcie_ports=compat",
    kexec_args="-s",
    sys_kexec_file_load=320,
    sys_kexec_load=246,
    cryptsetup_overhead=20 * MiB,
    reads_sme_sev=True,
)

I386_KDUMP = KdumpMachine(
    machine="i386",
    commandline_append="irqpoll nr_cpus=1 reset_devices numa=off udev.children-max=2 panic=10 "
    "transparent_hugepage=never cma=0",
)
