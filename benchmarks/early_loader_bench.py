"""Where the early load's time goes, from /init to "kexec: loaded early-kdump kernel".

    python3 benchmarks/early_loader_bench.py WORKDIR [--boots N] [--loader FILE]
                                             [--capture-initrd FILE] [--kernel 6.1]

WORKDIR is an ``early_bench.py --workdir`` directory for that kernel (e.g. /tmp/eb/6.1):
its guest-made system initramfs (``setup-out/initrd.img``) is unpacked on the host,
optionally given another loader script or capture initramfs, and booted under QEMU TCG
with ``rd.earlykdump`` only as far as the end of init-top: a test-only init-top line
marks when init-top starts, and a last init-top script powers the guest off
(sysrq o), so a boot takes seconds instead of a full systemd start.  All times are
the kernel's own timestamps; the best of N boots is reported per phase.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "early"))

import guest as g  # noqa: E402

from kdumpy.lab.kernels import get_kernel  # noqa: E402
from kdumpy.lab.qemu import parse_size, run_guest  # noqa: E402

TOP_MARK = 'echo "<5>tbench: init-top starts" > /dev/kmsg\n'
STOP = """#!/bin/sh
[ "$1" = prereqs ] && exit 0
echo "<5>tbench: init-top done" > /dev/kmsg
echo o > /proc/sysrq-trigger
sleep 30
"""
PHASES = (
    ("/init -> init-top", "Run /init", "tbench: init-top starts"),
    ("init-top -> loader", "tbench: init-top starts", "early-kdump is enabled."),
    ("loader: settings", "early-kdump is enabled.", "early-kdump: loading"),
    ("kexec -s -p", "early-kdump: loading", "kexec: loaded early-kdump kernel"),
    ("/init -> loaded", "Run /init", "kexec: loaded early-kdump kernel"),
    ("kernel -> /init", "Command line:", "Run /init"),
)


def make_initrd(system_initrd: Path, work: Path, loader: Path | None,
                capture: Path | None) -> Path:  # fmt: skip
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    data = subprocess.run(["zstd", "-dc", str(system_initrd)], capture_output=True,
                          check=True).stdout  # fmt: skip
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=tree, check=True)
    if loader is not None:
        shutil.copyfile(loader, tree / "kdumpy-early" / "kdumpy-early.sh")
    if capture is not None:
        shutil.copyfile(capture, tree / "kdumpy-early" / "initrd.img")
    top = tree / "scripts" / "init-top"
    (top / "zz-tbench-stop").write_text(STOP)
    (top / "zz-tbench-stop").chmod(0o755)
    order = (top / "ORDER").read_text()
    first = next(ln for ln in order.splitlines() if "kdumpy-early" in ln)
    order = order.replace(first, TOP_MARK.rstrip("\n") + "\n" + first, 1)
    stop = '/scripts/init-top/zz-tbench-stop "$@"\n'
    order = order.replace(first + "\n", first + "\n" + stop, 1)
    (top / "ORDER").write_text(order)
    files = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=files, cwd=tree,
                          capture_output=True, check=True).stdout  # fmt: skip
    out = work / "initrd.img"
    out.write_bytes(subprocess.run(["zstd", "-3", "-T0", "-c"], input=cpio,
                                   capture_output=True, check=True).stdout)  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--loader", type=Path)
    ap.add_argument("--capture-initrd", type=Path)
    ap.add_argument("--kernel", default="6.1")
    args = ap.parse_args(argv)
    kernel = get_kernel(args.kernel)
    work = Path(tempfile.mkdtemp(prefix="early-loader-"))
    initrd = make_initrd(args.workdir / "setup-out" / "initrd.img", work, args.loader,
                         args.capture_initrd)  # fmt: skip
    capture = args.capture_initrd or work / "tree" / "kdumpy-early" / "initrd.img"
    results: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    for i in range(args.boots):
        log = work / f"serial-{i}.log"
        append = f"{g.GUEST_CMDLINE} crashkernel={g.CRASHKERNEL} rd.earlykdump"
        run_guest(kernel=kernel.vmlinuz, initrd=initrd, append=append,
                  memory=parse_size(g.MEMORY), serial_log=log, timeout=600)  # fmt: skip
        text = log.read_text(errors="replace")
        for name, start, end in PHASES:
            a, b = g.stamp(text, start), g.stamp(text, end)
            if a is not None and b is not None:
                results[name].append(b - a)
    print(f"\nEarly load phases, {kernel.release}, capture initramfs "
          f"{capture.stat().st_size / 2**20:.1f} MiB; best of {args.boots} boots "
          "(kernel timestamps, s)")  # fmt: skip
    for name, times in results.items():
        shown = " ".join(f"{t:.2f}" for t in times) or "-"
        best = f"{min(times):.2f}" if times else "-"
        print(f"{name:22} {best:>6}   ({shown})")
    print(f"(serial logs: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
