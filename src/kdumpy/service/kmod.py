"""Kernel modules for the capture initramfs: which ones the dump target needs, in load order.

Host-only like dracut's ``--hostonly``: the drivers are read from sysfs (the ``driver``
and ``module`` links of the target device and its parents), dependencies from
``modules.dep``, and modules built into the kernel (``modules.builtin``) are skipped.
Compressed modules (.ko.xz/.ko.zst/.ko.gz) are stored decompressed, so that busybox's
``insmod`` (plain ``init_module``) loads them on any kernel.
"""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

import zstandard

from kdumpy.errors import KdumpyError

SYSFS = Path("/sys")
# What each kind of target needs beyond the device's own drivers.
FS_MODULES = {
    "ext2": ["ext2", "ext4"],  # ext4 can mount ext2/ext3 when ext2 is not separate
    "ext3": ["ext3", "ext4"],
    "ext4": ["ext4"],
    "xfs": ["xfs"],
    "btrfs": ["btrfs"],
    "minix": ["minix"],
    "virtiofs": ["virtiofs"],
    "nfs": ["nfs", "nfsv3", "nfsv4"],
    "vfat": ["vfat"],
}


def normalize(name: str) -> str:
    return name.replace("-", "_")


class ModuleIndex:
    """modules.dep and modules.builtin of one kernel release."""

    def __init__(self, modules_dir: Path) -> None:
        self.dir = modules_dir
        dep = modules_dir / "modules.dep"
        if not dep.exists():
            raise KdumpyError(f"{dep}: missing (run depmod for this kernel)")
        self.path: dict[str, str] = {}
        self.deps: dict[str, list[str]] = {}
        for line in dep.read_text().splitlines():
            rel, _, rest = line.partition(":")
            name = self.name_of(rel)
            self.path[name] = rel
            self.deps[name] = [self.name_of(d) for d in rest.split()]
        builtin = modules_dir / "modules.builtin"
        lines = builtin.read_text().splitlines() if builtin.exists() else []
        self.builtin = {self.name_of(rel) for rel in lines if rel}

    @staticmethod
    def name_of(rel: str) -> str:
        base = os.path.basename(rel)
        for ext in (".xz", ".zst", ".gz"):
            base = base.removesuffix(ext)
        return normalize(base.removesuffix(".ko"))

    def known(self, name: str) -> bool:
        return normalize(name) in self.path or normalize(name) in self.builtin

    def load_order(self, names: list[str], optional: bool = False) -> list[str]:
        """``names`` and their dependencies, dependencies first; built-ins left out.

        An unknown module is an error unless ``optional`` (e.g. ext2 on a kernel that
        handles ext2 in ext4).
        """
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in self.deps.get(name, []):
                visit(dep)
            order.append(name)

        for raw in names:
            name = normalize(raw)
            if name in self.builtin:
                continue
            if name not in self.path:
                if optional:
                    continue
                raise KdumpyError(f"kernel module {raw} not found in {self.dir}")
            visit(name)
        return order

    def module_bytes(self, name: str) -> bytes:
        """The module's ELF image, decompressed."""
        path = self.dir / self.path[name]
        data = path.read_bytes()
        if path.suffix == ".xz":
            return lzma.decompress(data)
        if path.suffix == ".zst":
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        if path.suffix == ".gz":
            return gzip.decompress(data)
        return data


def device_drivers(sys_device: Path) -> list[str]:
    """Modules bound to a sysfs device and all its parents (disk -> controller -> bus)."""
    modules: list[str] = []
    node = sys_device.resolve()
    while node != node.parent and str(node).startswith(str(SYSFS)):
        module = node / "driver" / "module"
        if module.exists():
            name = normalize(module.resolve().name)
            if name not in modules:
                modules.append(name)
        node = node.parent
    return modules


def block_device_drivers(devnode: str) -> list[str]:
    """Drivers for a block device node (/dev/vda1): the disk's, not the partition's."""
    name = os.path.basename(os.path.realpath(devnode))
    block = SYSFS / "class" / "block" / name
    if not block.exists():
        raise KdumpyError(f"{devnode}: no such block device in sysfs")
    if (block / "partition").exists():
        block = block.resolve().parent
    return device_drivers(block / "device")


def net_device_drivers(iface: str) -> list[str]:
    return device_drivers(SYSFS / "class" / "net" / iface / "device")
