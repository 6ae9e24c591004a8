"""`kdumpy lab`: real kernels crashing on demand in QEMU, for tests, benchmarks and newcomers."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kdumpy.errors import KdumpyError

if TYPE_CHECKING:  # the commands import what they use when they run (a fast CLI start)
    from rich.console import Console

    from kdumpy.lab.calibrate import Calibration


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="boot real kernels in QEMU, crash them, keep the vmcore")
    labsub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lab.set_defaults(func=lambda args: lab.print_help() or 2)

    kernels = labsub.add_parser("kernels", help="list the lab kernels and what is cached")
    kernels.add_argument("--fetch", action="store_true", help="download any missing kernel")
    kernels.set_defaults(func=cmd_kernels)

    vmcore = labsub.add_parser("vmcore", help="crash a guest and write the vmcore it leaves")
    _guest_options(vmcore)
    vmcore.add_argument("-o", "--output", required=True, type=Path, help="vmcore file to write")
    vmcore.set_defaults(func=cmd_vmcore)

    demo = labsub.add_parser("demo", help="see kdump work end to end, without crashing this host")
    _guest_options(demo)
    demo.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("kdumpy-demo/vmcore"),
        help="where to keep the vmcore (default: kdumpy-demo/vmcore)",
    )
    demo.set_defaults(func=cmd_demo)

    cal = labsub.add_parser(
        "calibrate", help="find the smallest crashkernel= that captures, by booting it in the lab"
    )
    cal.add_argument(
        "--kernel",
        help="a lab kernel (5.10, 6.1, 6.12, 7) or a vmlinuz path "
        "(default: this machine's, uname -r)",
    )
    cal.add_argument(
        "--memory", help="guest memory (default: this machine's RAM, at most 4G under TCG)"
    )
    cal.add_argument(
        "--sizes",
        default="96M,128M,160M,192M,224M,256M,320M,384M,512M",
        help="reservations to search, bisected from the largest",
    )
    cal.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/kdump.conf"),
        help="take core_collector from this kdump.conf if it exists",
    )
    cal.add_argument(
        "--workdir", type=Path, default=Path("kdumpy-calibrate"), help="serial logs and disks"
    )
    cal.add_argument("--timeout", type=float, default=900, help="seconds per trial")
    cal.add_argument(
        "--stack",
        help="with the dump target on a storage stack built in the lab's Debian guest: "
        "plain, lvm-thin, raid1, luks, luks-thin-raid1, lvm-raid5, iscsi (a lab kernel; "
        "default 6.1, 1G guest)",
    )
    cal.set_defaults(func=cmd_calibrate)


def _guest_options(p: argparse.ArgumentParser) -> None:
    from kdumpy.lab.userspace import CRASH_METHODS

    p.add_argument("--kernel", default="6.1", help="lab kernel: 5.10, 6.1, 6.12 or 7 (default 6.1)")
    p.add_argument("--memory", default="1G", help="guest memory, 512M to 64G (default 1G)")
    p.add_argument("--crashkernel", default="256M", help="crashkernel= reservation (default 256M)")
    p.add_argument(
        "--crash",
        default="sysrq",
        choices=sorted(CRASH_METHODS),
        help="how to crash the guest (default sysrq)",
    )
    p.add_argument("--timeout", type=float, default=900, help="seconds before giving up")


def cmd_kernels(args: argparse.Namespace) -> int:
    from kdumpy.lab.cache import cache_root
    from kdumpy.lab.kernels import SERIES_SUITES, get_kernel

    for series, suite in SERIES_SUITES.items():
        meta = cache_root() / "kernels" / series / "kernel.json"
        if meta.exists() or args.fetch:
            k = get_kernel(series)
            print(f"{series:10} {suite:9} {k.release:32} {k.package} {k.deb_version}")
        else:
            print(f"{series:10} {suite:9} (not downloaded yet)")
    return 0


def cmd_vmcore(args: argparse.Namespace) -> int:
    from kdumpy.lab.dumps import capture_vmcore

    dump = capture_vmcore(
        args.kernel,
        args.output,
        memory=args.memory,
        crashkernel=args.crashkernel,
        crash=args.crash,
        timeout=args.timeout,
    )
    print(
        f"{dump.vmcore}: {dump.size} bytes, kernel {dump.kernel.release}, "
        f"panic: {dump.panic_message}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from kdumpy.lab.demo_steps import STEPS
    from kdumpy.lab.dumps import capture_vmcore
    from kdumpy.lab.kernels import get_kernel

    console = Console()
    start = time.monotonic()
    with console.status(f"Fetching Debian's {args.kernel} kernel..."):
        kernel = get_kernel(args.kernel)
    console.print(f"[bold]kernel[/] {kernel.release} ({kernel.package} {kernel.deb_version})")
    with console.status(
        f"Booting it in QEMU with {args.memory} and crashkernel={args.crashkernel}, "
        f"loading the capture kernel, crashing by {args.crash}, capturing /proc/vmcore..."
    ):
        dump = capture_vmcore(
            kernel,
            args.output,
            memory=args.memory,
            crashkernel=args.crashkernel,
            crash=args.crash,
            timeout=args.timeout,
        )
    table = Table(title="kdumpy lab demo", show_header=False)
    table.add_row("kernel", kernel.release)
    table.add_row("crash", f"{args.crash}: Kernel panic - not syncing: {dump.panic_message}")
    table.add_row("vmcore", f"{dump.vmcore} ({dump.size / 2**20:.0f} MiB, mode 0600)")
    table.add_row("serial console", str(dump.serial_log))
    t = dump.timings
    if "boot_to_panic" in t:
        table.add_row("boot to panic", f"{t['boot_to_panic']:.1f} s")
    if "panic_to_saved" in t:
        table.add_row("panic to vmcore saved", f"{t['panic_to_saved']:.1f} s")
    for title, step in STEPS:
        try:
            line = step(dump)
        except KdumpyError as exc:
            line = f"[red]{exc}[/]"
        if line is not None:
            table.add_row(title, line)
    table.add_row("total time", f"{time.monotonic() - start:.1f} s")
    console.print(table)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console

    from kdumpy.lab.calibrate import build_calibration_initramfs, calibrate
    from kdumpy.lab.qemu import mib, parse_size

    console = Console()
    if args.stack:
        return _calibrate_stack(args, console)
    vmlinuz, release, modules_dir, kconfig = _calibration_kernel(args.kernel)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    memory = parse_size(args.memory) if args.memory else min(total, 4 << 30)
    collector = None
    if args.config.exists():
        from kdumpy.service.config import load_config

        collector = " ".join(load_config(args.config).core_collector)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with console.status(f"Building a capture initramfs for {release}..."):
        initrd = build_calibration_initramfs(
            release, args.workdir / "initrd.img", collector, modules_dir, kconfig
        )
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    console.print(
        f"Calibrating {release} with a {mib(memory)} guest, collector "
        f"{collector or 'kdumpy collect (default)'}, "
        f"initramfs {initrd.stat().st_size / 2**20:.1f} MiB"
    )
    result = calibrate(vmlinuz, initrd, memory, sizes, args.workdir, args.timeout, console.print)
    return _show_calibration(console, result, f"{release}, {mib(memory)} guest", sizes)


def _show_calibration(console: Console, result: Calibration, title: str, sizes: list[int]) -> int:
    from rich.table import Table

    from kdumpy.lab.qemu import mib

    table = Table(title=f"kdumpy lab calibrate: {title}")
    for col in ("crashkernel", "capture", "seconds", "crash to saved", "serial console"):
        table.add_column(col)
    for t in result.trials:
        state = "[green]saved[/]" if t.ok else f"[red]{t.why}[/]"
        saved = f"{t.crash_to_saved:.0f}" if t.crash_to_saved is not None else "-"
        table.add_row(mib(t.size), state, f"{t.seconds:.0f}", saved, str(t.serial_log))
    console.print(table)
    if result.smallest is None:
        console.print(f"No capture succeeded, even at {mib(max(sizes))}: see the serial logs.")
        return 1
    recommended = mib(result.recommended or 0)
    console.print(
        f"Smallest reservation that captured: {mib(result.smallest)}.  Recommended, with margin: "
        f"[bold]{result.crashkernel()}[/]  (apply with: kdumpy reserve {recommended})"
    )
    return 0


def _calibrate_stack(args: argparse.Namespace, console: Console) -> int:
    """Build the stack in the Debian guest once, then bisect with crashes saved through it."""
    from kdumpy.lab.kernels import get_kernel
    from kdumpy.lab.qemu import mib, parse_size
    from kdumpy.lab.stacklab import calibrate_stack

    kernel = get_kernel(args.kernel or "6.1")
    memory = parse_size(args.memory or "1G")
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    with console.status(f"Building the {args.stack} stack in the Debian guest..."):
        prepared, result = calibrate_stack(args.stack, args.workdir, kernel, memory, sizes,
                                           args.timeout, console.print)  # fmt: skip
    layers = ", ".join(prepared.manifest.get("stack", {}).get("layers", [])) or "none"
    console.print(f"Capture initramfs {prepared.initrd.stat().st_size} bytes; stack: {layers}")
    title = f"{kernel.release}, {mib(memory)} guest, {args.stack}"
    return _show_calibration(console, result, title, sizes)


def _calibration_kernel(name: str | None) -> tuple[Path, str, Path | None, Path | None]:
    """(vmlinuz, release, modules dir, kernel config) for a lab series, a path or uname -r."""
    import os

    from kdumpy.lab.kernels import SERIES_SUITES, get_kernel

    if name in SERIES_SUITES:
        k = get_kernel(name)
        return k.vmlinuz, k.release, k.modules_dir, k.config_file
    if name:
        path = Path(name)
        release = path.name.removeprefix("vmlinuz-")
    else:
        release = os.uname().release
        path = Path(f"/boot/vmlinuz-{release}")
    if not path.exists():
        raise KdumpyError(
            f"{path}: no such kernel image (give --kernel 5.10|6.1|6.12|7 or a vmlinuz)"
        )
    return path, release, None, None
