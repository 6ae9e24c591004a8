"""kdump's facts for 64-bit POWER, little- and big-endian: see :mod:`kdumpy.arch.kdump`."""

from __future__ import annotations

from kdumpy.arch.kdump import KdumpMachine, Platform

KDUMP_TABLE = "2G-4G:384M,4G-16G:512M,16G-64G:1G,64G-128G:2G,128G-:4G"
FADUMP_TABLE = (
    "4G-16G:768M,16G-64G:1G,64G-128G:2G,128G-1T:4G,1T-2T:6G,2T-4T:12G,4T-8T:20G,"
    "8T-16T:36G,16T-32T:64G,32T-64T:128G,64T-:180G"
)


def crashkernel_extra_mib(platform: Platform) -> int:
    """1 MiB of per-CPU areas for each CPU the capture kernel brings up."""
    return platform.nr_cpus


PPC64LE_KDUMP = KdumpMachine(
    machine="ppc64le",
    crashkernel_table=KDUMP_TABLE,
    crashkernel_extra_mib=crashkernel_extra_mib,
    crashkernel_auto=KDUMP_TABLE,
    fadump_table=FADUMP_TABLE,
    commandline_remove="",
    commandline_append="irqpoll nr_cpus=16 noirqdistrib reset_devices cgroup_disable=memory "
    "numa=off udev.children-max=2 ehea.use_mcs=0 panic=10 kvm_cma_resv_ratio=0 "
    "transparent_hugepage=never",
    fadump_append="nr_cpus=16 numa=off cgroup_disable=memory cma=0 kvm_cma_resv_ratio=0 "
    "hugetlb_cma=0 transparent_hugepage=never novmcoredd udev.children-max=2",
    kexec_args="-s",
    sys_kexec_file_load=382,
    sys_kexec_load=268,
)

PPC64_KDUMP = KdumpMachine(
    machine="ppc64",
    commandline_remove="",
    commandline_append="irqpoll maxcpus=1 noirqdistrib reset_devices cgroup_disable=memory "
    "numa=off udev.children-max=2 ehea.use_mcs=0 panic=10 kvm_cma_resv_ratio=0 "
    "transparent_hugepage=never",
    kexec_args="--dt-no-old-root",
)
