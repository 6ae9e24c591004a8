"""Fixtures for the service tests: a capture initramfs built for a lab kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lab_kernel_61():
    """The Debian 6.1 cloud kernel from the lab (downloaded once, cached)."""
    from kdumpy.lab.kernels import get_kernel

    return get_kernel("6.1")


@pytest.fixture(scope="session")
def lab_initramfs(lab_kernel_61, tmp_path_factory: pytest.TempPathFactory):
    """A capture initramfs for the lab 6.1 kernel, dumping to ext4 LABEL=kdumptest."""
    from kdumpy.service.config import parse_config
    from kdumpy.service.initramfs import BuildOptions, build_initramfs

    if shutil.which("busybox") is None:
        pytest.skip("busybox-static not installed")
    out = tmp_path_factory.mktemp("initramfs") / "initrd.img"
    config = parse_config("ext4 LABEL=kdumptest\npath /dumps\n", "lab-test.conf")
    opts = BuildOptions(
        release=lab_kernel_61.release,
        output=out,
        modules_dir=lab_kernel_61.modules_dir,
        kernel_config=lab_kernel_61.config_file,
        hostonly=False,  # the guest's disk is virtio: name its drivers
        extra_modules=["virtio_pci", "virtio_blk"],
    )
    return build_initramfs(config, opts, report=lambda line: None)


@pytest.fixture(scope="session")
def cpio_list():
    """Names in a compressed initramfs, as GNU cpio lists them (the independent reader)."""
    return _cpio_list


def _cpio_list(archive: Path) -> list[str]:
    import subprocess

    raw = subprocess.run(["zstd", "-dc", str(archive)], capture_output=True, check=True).stdout
    proc = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True)
    return proc.stdout.decode().split()
