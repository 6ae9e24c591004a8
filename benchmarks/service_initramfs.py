"""Capture initramfs: kdumpy's (Python runtime) beside a makedumpfile-only busybox initramfs.

Run by hand:  python benchmarks/service_initramfs.py [--boot]

Both archives are built for the lab's 6.1 kernel with the same writer, the same kernel
modules and the same /init, so the difference is what the Python runtime costs: build
time, compressed size (the file kexec loads) and unpacked size (tmpfs in the capture
kernel).  The reference is what a C-only capture environment needs (busybox +
makedumpfile + its libraries), i.e. the floor kdump-utils' mkdumprd approaches.  With
--boot, each is booted under QEMU (TCG) and the time to the point where the dump could
start is measured from the serial console.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kdumpy.lab.kernels import get_kernel
from kdumpy.lab.qemu import Disk, run_guest
from kdumpy.service import initramfs as builder
from kdumpy.service.config import parse_config
from kdumpy.service.image import Image
from kdumpy.service.initramfs import BuildOptions, add_elf, build_initramfs

MiB = 1 << 20


def reference_initramfs(kernel, out: Path) -> tuple[float, int, int]:
    """busybox + makedumpfile + the virtio modules + a shell /init that runs makedumpfile."""
    start = time.monotonic()
    image = Image()
    builder._add_base(image)
    builder._add_busybox(image)
    add_elf(image, shutil.which("makedumpfile") or "/usr/bin/makedumpfile")
    builder._add_kernel_modules(image, kernel.modules_dir, ["virtio_pci", "virtio_blk"])
    init = (
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\n"
        "mount -t devtmpfs devtmpfs /dev\n"
        "while read m; do insmod /lib/modules/kdumpy/$m.ko; done < /etc/kdumpy/modules\n"
        "echo 'reference: ready to dump'\nmakedumpfile -v >/dev/null 2>&1\npoweroff -f\n"
    )
    image.add_bytes("/init", init.encode(), mode=0o755)
    image.write(out, "zstd")
    return time.monotonic() - start, out.stat().st_size, image.file_size()


def kdumpy_initramfs(kernel, out: Path) -> tuple[float, int, int]:
    start = time.monotonic()
    config = parse_config("ext4 LABEL=kdumptest\npath /dumps\n", "bench.conf")
    opts = BuildOptions(
        release=kernel.release,
        output=out,
        modules_dir=kernel.modules_dir,
        kernel_config=kernel.config_file,
        hostonly=False,
        extra_modules=["virtio_pci", "virtio_blk"],
    )
    result = build_initramfs(config, opts, report=lambda line: None)
    return time.monotonic() - start, result.size, result.unpacked


def boot_time(kernel, initrd: Path, marker: str, tmp: Path) -> float:
    disk = tmp / "disk.img"
    disk.write_bytes(b"\0" * (64 * MiB))
    import subprocess

    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "kdumptest", str(disk)], check=True)
    run = run_guest(
        kernel=kernel.vmlinuz,
        initrd=initrd,
        append="console=ttyS0 panic=-1",
        memory=1 << 30,
        serial_log=tmp / f"{initrd.name}.log",
        disks=[Disk(disk)],
        timeout=600,
        markers=(marker,),
    )
    return run.markers.get(marker, float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boot", action="store_true", help="also boot both under QEMU")
    args = parser.parse_args()
    kernel = get_kernel("6.1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ours = kdumpy_initramfs(kernel, tmp / "kdumpy.img")
        ref = reference_initramfs(kernel, tmp / "reference.img")
        rows = [
            ("build time (s)", ours[0], ref[0]),
            ("compressed (MiB)", ours[1] / MiB, ref[1] / MiB),
            ("unpacked (MiB)", ours[2] / MiB, ref[2] / MiB),
        ]
        if args.boot:
            rows.append(
                (
                    "boot to dump-ready (s, TCG)",
                    boot_time(kernel, tmp / "kdumpy.img", "kdumpy-selftest: done", tmp),
                    boot_time(kernel, tmp / "reference.img", "reference: ready", tmp),
                )
            )
    print(f"capture initramfs for {kernel.release} (python {sys.version.split()[0]})")
    print(f"{'':30} {'kdumpy':>10} {'busybox+makedumpfile':>22} {'ratio':>7}")
    for name, a, b in rows:
        print(f"{name:30} {a:10.2f} {b:22.2f} {a / b:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
