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
        self.softdeps = self._read_softdeps(modules_dir / "modules.softdep")
        self.aliases = self._read_aliases(modules_dir / "modules.alias")

    @staticmethod
    def _read_softdeps(path: Path) -> dict[str, tuple[list[str], list[str]]]:
        """``softdep X pre: a b post: c`` -> {X: ([a, b], [c])} (depmod's modules.softdep)."""
        result: dict[str, tuple[list[str], list[str]]] = {}
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            words = line.split()
            if len(words) < 3 or words[0] != "softdep":
                continue
            # A module may have several softdep lines: they add up.
            pre, post = result.setdefault(normalize(words[1]), ([], []))
            current = pre
            for word in words[2:]:
                if word in ("pre:", "post:"):
                    current = pre if word == "pre:" else post
                else:
                    current.append(word)
        return result

    @staticmethod
    def _read_aliases(path: Path) -> dict[str, list[str]]:
        """Exact (wildcard-free) aliases -> modules, enough for softdep names like crc32c."""
        result: dict[str, list[str]] = {}
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "alias" and not any(c in words[1] for c in "*?["):
                result.setdefault(normalize(words[1]), []).append(normalize(words[2]))
        return result

    def resolve(self, name: str) -> list[str]:
        """A module name or alias -> loadable (not built-in) modules; [] if none, e.g. when
        only built-in code provides it (kmod would load nothing either)."""
        name = normalize(name)
        if name in self.path or name in self.builtin:
            candidates = [name]
        elif name in self.aliases:  # kmod looks in modules.alias before built-in aliases
            candidates = self.aliases[name]
        else:
            candidates = []
        return [c for c in candidates if c in self.path and c not in self.builtin]

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
            pre, post = self.softdeps.get(name, ([], []))
            # Soft dependencies (crc32c for libcrc32c) load like modprobe loads them:
            # pre before, post after; a missing one is skipped, as modprobe does.
            for soft in pre:
                for dep in self.resolve(soft):
                    visit(dep)
            for dep in self.deps.get(name, []):
                visit(dep)
            order.append(name)
            for soft in post:
                for dep in self.resolve(soft):
                    visit(dep)

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
