"""Where the service keeps its files, and which kernel it loads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service.config import DEFAULT_CONFIG_PATH

STATE_DIR = Path("/var/lib/kdumpy")
# In a directory of root's own (0700), not in /run/lock (1777), where any user could plant a
# symbolic link for root to follow or take the lock first and hold it.
LOCK_DIR = Path("/run/kdumpy")
LOCK_NAME = "lock"
BOOT_DIRS = (Path("/boot"), Path("/boot/efi"), Path("/efi"), Path("/"))


@dataclass(frozen=True)
class ServicePaths:
    """The files one service run works with (overridable for tests and guests)."""

    config: Path = DEFAULT_CONFIG_PATH
    sysconfig: Path | None = None  # None: the first of sysconfig.SYSCONFIG_PATHS
    state_dir: Path = STATE_DIR
    release: str = ""  # kernel release to load; "" = the running one

    @property
    def kernel_release(self) -> str:
        return self.release or os.uname().release

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
        """The vmlinuz of the release, looked up like kdumpctl's prepare_kdump_kernel."""
        names = [f"vmlinuz-{self.kernel_release}", f"{self.kernel_release}/vmlinuz"]
        for base in BOOT_DIRS:
            for name in names:
                if (base / name).is_file():
                    return base / name
        modules = Path("/lib/modules") / self.kernel_release / "vmlinuz"
        if modules.is_file():
            return modules
        raise KdumpyError(f"no kernel image found for {self.kernel_release} in /boot")
