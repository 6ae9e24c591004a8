"""kdump's facts for IBM Z (s390x): see :mod:`kdumpy.arch.kdump`."""

from __future__ import annotations

from kdumpy.arch.kdump import KdumpMachine, memory_encryption_extra_mib

S390X_KDUMP = KdumpMachine(
    machine="s390x",
    crashkernel_table="2G-64G:256M,64G-:512M",
    crashkernel_extra_mib=memory_encryption_extra_mib,
    crashkernel_auto="1G-4G:160M,4G-64G:192M,64G-1T:256M,1T-:512M",
    commandline_remove="vmcp_cma cma prot_virt zfcp.allow_lun_scan",
    commandline_append="nr_cpus=1 cgroup_disable=memory numa=off udev.children-max=2 panic=10 "
    "transparent_hugepage=never vmcp_cma=0 cma=0",
    kexec_args="-s",
    boot_config="zipl",
    reads_sme_sev=True,
)
