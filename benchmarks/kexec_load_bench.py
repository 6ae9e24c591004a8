"""How long kexec_file_load of the capture kernel takes under TCG, by initramfs size.

    python3 benchmarks/kexec_load_bench.py [KERNEL] [MiB ...] [MODULE.ko ...]
                                           (default: 6.1; 0 5 10 20; modules: insmod first)

A bare busybox guest (no udev, no systemd, nothing else running) loads the lab kernel's
vmlinuz with ``kexec -s -p`` and initramfs files of random bytes of each size, three
times each, and unloads in between.  Each load is bracketed by lines written to
/dev/kmsg; the times are the kernel's own timestamps.  This is the floor under early
kdump's load time: the kernel reads every segment, hashes it with sha256 for purgatory
and copies it into the crashkernel reservation, and under TCG that is slow.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import sys
import tempfile
from pathlib import Path

from kdumpy.lab.kernels import get_kernel
from kdumpy.lab.qemu import parse_size, run_guest
from kdumpy.service.cpio import CpioWriter
from kdumpy.service.elfdeps import shared_libraries

REPEAT = 3
INIT = r"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /bench/*.ko; do
    [ -e "$m" ] && insmod "$m" && echo "<5>kbench: inserted $m" > /dev/kmsg
done
for f in /bench/*.img; do
    n=$(basename "$f" .img)
    for i in @REPEAT@; do
        echo "<5>kbench: start $n $i" > /dev/kmsg
        kexec -s -p --command-line="console=ttyS0 nr_cpus=1" --initrd="$f" /bench/vmlinuz
        echo "<5>kbench: loaded $n $i rc=$? $(cat /sys/kernel/kexec_crash_loaded)" > /dev/kmsg
        kexec -s -p -u
    done
done
echo "<5>kbench: start none 1" > /dev/kmsg
kexec -s -p --command-line="console=ttyS0 nr_cpus=1" /bench/vmlinuz
echo "<5>kbench: loaded none 1 rc=$?" > /dev/kmsg
step() {
    name=$1
    shift
    echo "<5>kbench: start $name 1" > /dev/kmsg
    "$@" > /dev/null 2>&1
    echo "<5>kbench: loaded $name 1 rc=$?" > /dev/kmsg
}
step unsigned-none kexec -s -p --command-line="console=ttyS0 nr_cpus=1" /bench/vmlinuz.unsigned
kexec -s -p -u
step file-l-none kexec -s -l --command-line="console=ttyS0" /bench/vmlinuz
kexec -s -u
step sh /bin/true
step kexec-version kexec --version
step read-vmlinuz cat /bench/vmlinuz
step sha256-vmlinuz sha256sum /bench/vmlinuz
step unload kexec -s -p -u
step kexec_load-none kexec -p --command-line="console=ttyS0 nr_cpus=1" /bench/vmlinuz
kexec -p -u
poweroff -f
"""


def build(work: Path, vmlinuz: Path, sizes: list[int], modules: list[Path]) -> Path:
    out = work / "bench.cpio"
    busybox = shutil.which("busybox")
    kexec = shutil.which("kexec")
    assert busybox and kexec
    with open(out, "wb") as raw:
        cpio = CpioWriter(raw)
        for d in ("/bin", "/sbin", "/proc", "/sys", "/dev", "/bench", "/lib", "/lib64"):
            cpio.add_dir(d, 0o755)
        cpio.add_file("/bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in ("sh", "mount", "cat", "basename", "poweroff", "true", "sha256sum", "insmod"):
            cpio.add_symlink(f"/bin/{applet}", "busybox")
        cpio.add_file("/sbin/kexec", Path(kexec).read_bytes(), 0o755)
        dirs = {"/lib", "/lib64"}
        for lib in shared_libraries(Path(kexec)):
            parent = str(Path(lib).parent)
            if parent not in dirs:
                cpio.add_dir(parent, 0o755)
                dirs.add(parent)
            cpio.add_file(lib, Path(lib).resolve().read_bytes(), 0o755)
        cpio.add_file("/bench/vmlinuz", vmlinuz.read_bytes(), 0o644)
        cpio.add_file("/bench/vmlinuz.unsigned", unsigned(vmlinuz.read_bytes()), 0o644)
        for module in modules:
            cpio.add_file(f"/bench/{module.name}", module.read_bytes(), 0o644)
        for mib in sizes:
            cpio.add_file(f"/bench/{mib:03d}M.img", os.urandom(mib << 20), 0o644)
        init = INIT.replace("@REPEAT@", " ".join(str(i) for i in range(1, REPEAT + 1)))
        cpio.add_file("/init", init.encode(), 0o755)
        cpio.finish()
    return out


def unsigned(image: bytes) -> bytes:
    """The bzImage without its Authenticode signature (PE certificate table entry zeroed,
    the table cut off): the kernel's KEXEC_BZIMAGE_VERIFY_SIG check then stops before
    hashing the image, which isolates the cost of that check."""
    pe = struct.unpack_from("<I", image, 0x3C)[0]
    opt = pe + 24
    entry = opt + (96 if struct.unpack_from("<H", image, opt)[0] == 0x10B else 112) + 4 * 8
    va, size = struct.unpack_from("<II", image, entry)
    out = bytearray(image[:va] if va and va + size == len(image) else image)
    struct.pack_into("<II", out, entry, 0, 0)
    return bytes(out)


LINE = re.compile(r"\[\s*(\d+\.\d+)\] kbench: (start|loaded) (\S+) (\d+)(.*)")


def main(argv: list[str]) -> int:
    modules = [Path(a) for a in argv if a.endswith(".ko")]
    argv = [a for a in argv if not a.endswith(".ko")]
    kernel_name = argv[0] if argv else "6.1"
    sizes = [int(a) for a in argv[1:]] or [0, 5, 10, 20]
    kernel = get_kernel(kernel_name)
    work = Path(tempfile.mkdtemp(prefix="kexec-bench-"))
    initrd = build(work, kernel.vmlinuz, [s for s in sizes if s], modules)
    log = work / "serial.log"
    append = "console=ttyS0 crashkernel=256M panic=1 no_timer_check"
    run_guest(kernel=kernel.vmlinuz, initrd=initrd, append=append,
              memory=parse_size("1G"), serial_log=log, timeout=900)  # fmt: skip
    starts: dict[tuple[str, str], float] = {}
    results: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.search(line)
        if not m:
            continue
        t, what, name, i, rest = float(m[1]), m[2], m[3], m[4], m[5]
        if what == "start":
            starts[(name, i)] = t
        else:
            results.setdefault(name, []).append(t - starts[(name, i)])
            if "rc=" in rest and "rc=0" not in rest and name != "unload":
                print(f"warning: {name} #{i}: {rest.strip()}")
    vm_size = kernel.vmlinuz.stat().st_size / 2**20
    print(f"\nkexec -s -p under TCG, bare busybox guest, {kernel.release} "
          f"(vmlinuz {vm_size:.1f} MiB); seconds between /dev/kmsg lines")  # fmt: skip
    print(f"{'initramfs':>10} {'best':>6} {'all':>24}")
    for name, times in results.items():
        print(f"{name:>10} {min(times):6.2f} {' '.join(f'{t:.2f}' for t in times):>24}")
    print(f"(serial log: {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
