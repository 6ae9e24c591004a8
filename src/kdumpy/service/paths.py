"""Where the service keeps its files, and which kernel it loads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kdumpy.service import kernels
from kdumpy.service.config import DEFAULT_CONFIG_PATH
from kdumpy.service.sysconfig import load_sysconfig

STATE_DIR = Path("/var/lib/kdumpy")
# In a directory of root's own (0700), not in /run/lock (1777), where any user could plant a
# symbolic link for root to follow or take the lock first and hold it.
LOCK_DIR = Path("/run/kdumpy")
LOCK_NAME = "lock"


@dataclass(frozen=True)
class ServicePaths:
    """The files one service run works with (overridable for tests and guests)."""

    config: Path = DEFAULT_CONFIG_PATH
    sysconfig: Path | None = None  # None: the first of sysconfig.SYSCONFIG_PATHS
    state_dir: Path = STATE_DIR
    release: str = ""  # kernel release to load; "" = the running one

    @property
    def kernel_release(self) -> str:
        """--kernel-release, else KDUMP_KERNELVER, else the running kernel (its non-debug
        twin when installed, as kdumpctl)."""
        if self.release:
            return self.release
        kernelver = load_sysconfig(self.sysconfig).kernelver
        return kernels.kdump_kernel_version(kernelver, os.uname().release)

    @property
    def initrd(self) -> Path:
        return self.state_dir / f"initramfs-{self.kernel_release}kdump.img"

    @property
    def manifest(self) -> Path:
        return self.state_dir / f"initramfs-{self.kernel_release}kdump.json"

    @property
    def test_status(self) -> Path:
        return self.state_dir / "vmcore-creation.status"

    def kernel_image(self) -> Path:
        """The kernel to load for the release, looked up like kdumpctl's prepare_kdump_kernel
        (kernels.py; a unified kernel image's .linux section is copied out first)."""
        sysconfig = load_sysconfig(self.sysconfig)
        dirs = tuple(Path(d) for d in sysconfig.bootdir.split()) or kernels.BOOT_DIRS
        lookup = kernels.Lookup(boot_dirs=dirs, img=sysconfig.img, img_ext=sysconfig.img_ext)
        image = kernels.find_kernel(self.kernel_release, lookup)
        return kernels.kernel_for_kexec(image, self.state_dir, self.kernel_release)
