"""Kernel modules for the initramfs, checked against kmod's modprobe (--show-depends) on
the lab kernels, and mount lookups against util-linux's findmnt."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.service.kmod import ModuleIndex
from kdumpy.service.targets import mount_of

MODULES = ["virtio_blk", "virtio_pci", "virtio_net", "xfs", "btrfs", "nfsv4", "ext4", "e1000"]


def _modprobe(kernel, name: str) -> list[str]:
    """Module names modprobe would insmod, in its order ("builtin" lines dropped)."""
    proc = subprocess.run(
        ["modprobe", "-S", kernel.release, "-d", str(kernel.root), "--show-depends", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        ModuleIndex.name_of(line.split()[1])
        for line in proc.stdout.splitlines()
        if line.startswith("insmod ")
    ]


def _softdep_names(kernel, modules: list[str]) -> set[str]:
    """Soft dependency names of ``modules``, from depmod's modules.softdep."""
    names: set[str] = set()
    for line in (kernel.modules_dir / "modules.softdep").read_text().splitlines():
        words = line.split()
        if len(words) > 2 and words[0] == "softdep" and words[1].replace("-", "_") in modules:
            names.update(w for w in words[2:] if w not in ("pre:", "post:"))
    return names


@pytest.mark.parametrize("series", ["6.1", "6.12", "7"])
def test_load_order_agrees_with_modprobe(series: str) -> None:
    if shutil.which("modprobe") is None:
        pytest.skip("kmod not installed")
    from kdumpy.lab.kernels import get_kernel

    kernel = get_kernel(series)
    if not str(kernel.modules_dir).startswith(str(kernel.root / "lib")):
        pytest.skip("modprobe -d wants lib/modules under the root")
    index = ModuleIndex(kernel.modules_dir)
    for name in MODULES:
        if not index.known(name):
            continue
        ours = index.load_order([name])
        theirs = _modprobe(kernel, name)
        assert set(theirs) <= set(ours), name
        # kmod 30 follows only the first "softdep X pre:" line of a module; we follow all
        # (btrfs wants sha256 and xxhash64 too).  Every extra must be what modprobe
        # itself resolves one of those soft dependency names to.
        softdeps = _softdep_names(kernel, ours)
        resolved = {m for soft in softdeps for m in _modprobe(kernel, soft)}
        assert set(ours) - set(theirs) <= resolved, name
        for position, module in enumerate(ours):
            assert set(_modprobe(kernel, module)) <= set(ours[: position + 1]), module


def test_compressed_modules_are_stored_as_elf(tmp_path: Path) -> None:
    from kdumpy.lab.kernels import get_kernel

    for series in ("6.12", "7"):
        index = ModuleIndex(get_kernel(series).modules_dir)
        compressed = [n for n, rel in index.path.items() if rel.endswith((".xz", ".zst"))]
        if not compressed:
            continue
        name = sorted(compressed)[0]
        data = index.module_bytes(name)
        assert data[:4] == b"\x7fELF"
        path = index.dir / index.path[name]
        tool = ["xz", "-dc"] if path.suffix == ".xz" else ["zstd", "-dc"]
        assert data == subprocess.run([*tool, str(path)], capture_output=True, check=True).stdout
        return
    pytest.skip("no lab kernel with compressed modules")


@pytest.mark.parametrize("path", ["/", "/proc", "/proc/self", "/dev", "/tmp", "/work"])
def test_mount_of_agrees_with_findmnt(path: str) -> None:
    if not Path(path).exists() or shutil.which("findmnt") is None:
        pytest.skip("path or findmnt missing")
    proc = subprocess.run(
        ["findmnt", "-n", "-o", "TARGET,FSTYPE", "-T", path], capture_output=True, text=True
    )
    target, fstype = proc.stdout.split()
    ours = mount_of(path)
    assert (ours.mountpoint, ours.fstype) == (target, fstype)
