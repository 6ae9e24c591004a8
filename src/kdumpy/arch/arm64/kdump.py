"""kdump's facts for arm64 (``uname -m`` aarch64): see :mod:`kdumpy.arch.kdump`."""

from __future__ import annotations

from kdumpy.arch.kdump import KdumpMachine, MiB, Platform


def crashkernel_extra_mib(platform: Platform) -> int:
    """kdump-utils' additions: a 64K-page kernel (its release says "64k") +100M, +384M more
    with an ARM SMMU, +200M with mlx5; a 4K-page kernel +150M with mlx5."""
    if "64k" in platform.kernel_release:
        return 100 + (384 if platform.arm_smmu else 0) + (200 if platform.mlx5 else 0)
    return 150 if platform.mlx5 else 0


ARM64_KDUMP = KdumpMachine(
    machine="aarch64",
    crashkernel_table="2G-4G:256M,4G-64G:320M,64G-:576M",
    crashkernel_extra_mib=crashkernel_extra_mib,
    crashkernel_auto="2G-:448M",
    crashkernel_default_low=128 * MiB,
    commandline_append="irqpoll nr_cpus=1 reset_devices cgroup_disable=memory "
    "udev.children-max=2 panic=10 swiotlb=noforce cma=0",
    kexec_args="-s",
    sys_kexec_file_load=294,
    sys_kexec_load=104,
    cryptsetup_overhead=50 * MiB,
)
