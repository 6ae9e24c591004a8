"""Early kdump against the systemd service: when is the capture kernel loaded?

    python3 benchmarks/early_bench.py [--workdir DIR] [KERNEL ...]   (default: 6.1)

``--workdir`` keeps (and reuses) each kernel's set-up guest in DIR/<kernel>.

For each lab kernel, in the lab's Debian guest (QEMU TCG): one set-up boot runs
``kdumpy install-service`` and ``kdumpy early enable``; then
  * an early boot (rd.earlykdump): the loader's "kexec: loaded early-kdump kernel" line;
  * a service boot (no rd.earlykdump): kdumpy.service loads the capture kernel, and an
    ExecStartPost drop-in writes "kdumpy-bench: kdumpy.service done" to /dev/kmsg.
Times are the kernel's own timestamps on the serial console, from kernel start and from
the kernel's "Run /init as init process" line.  Also: how much the system initramfs
grew, and what the growth is made of (from the guest-made initramfs, unpacked with
zstd + GNU cpio).  The target is an early load within 1 s of /init on 6.1.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "early"))

import guest as g  # noqa: E402

IDLE_JOB = "true\n"
MiB = 2**20


def _member_sizes(initrd: Path, workdir: Path) -> dict[str, int]:
    dest = workdir / "unpacked"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    data = subprocess.run(["zstd", "-dc", str(initrd)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames"], input=data, cwd=dest,
                   check=True, capture_output=True)  # fmt: skip
    return {str(p.relative_to(dest)): p.stat().st_size for p in dest.rglob("*") if p.is_file()}


def _kexec_bytes(unpacked: Path, original: dict[str, int]) -> int:
    """kexec and the shared libraries it needs (ldd) that the original initramfs lacked."""
    kexec = next(p for p in (unpacked / "usr/sbin/kexec", unpacked / "sbin/kexec") if p.exists())
    ldd = subprocess.run(["ldd", str(kexec)], capture_output=True, text=True).stdout
    needed = {line.split()[0] for line in ldd.splitlines() if "=>" in line}
    total = kexec.stat().st_size
    for path in unpacked.rglob("*"):
        rel = str(path.relative_to(unpacked))
        if path.name in needed and rel not in original:
            total += path.resolve().stat().st_size if path.is_symlink() else 0
    return total


def measure(kernel_name: str, root: Path) -> dict[str, object]:
    from kdumpy.lab.kernels import get_kernel

    kernel = get_kernel(kernel_name)
    work = root / kernel_name
    guest = g.load(work, kernel) or g.setup(work, kernel)
    early = g.job_boot(guest, "bench-early", early=True, script=IDLE_JOB)
    service = g.job_boot(guest, "bench-service", early=False, script=g.SERVICE_JOB)
    row: dict[str, object] = {"kernel": kernel.release}
    e_init = g.stamp(early.serial, "Run /init")
    e_load = g.stamp(early.serial, "kexec: loaded early-kdump kernel")
    s_init = g.stamp(service.serial, "Run /init")
    s_load = g.stamp(service.serial, "kdumpy-bench: kdumpy.service done, kexec_crash_loaded=1")
    row.update(early_init=e_init, early_load=e_load, service_init=s_init, service_load=s_load)
    sizes = _member_sizes(guest.initrd, work / "new")
    original = _member_sizes(guest.original_initrd, work / "old")
    row.update(
        size_before=guest.original_initrd.stat().st_size,
        size_after=guest.initrd.stat().st_size,
        vmlinuz=sizes.get("kdumpy-early/vmlinuz", 0),
        capture_initrd=sizes.get("kdumpy-early/initrd.img", 0),
        kexec=_kexec_bytes(work / "new" / "unpacked", original),
    )
    return row


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "-"


def _diff(a: object, b: object) -> float | None:
    return a - b if isinstance(a, float) and isinstance(b, float) else None


def print_table(rows: list[dict[str, object]]) -> None:
    print("\nCapture kernel loaded (kernel log timestamps, seconds; QEMU TCG)")
    head = (f"{'kernel':28} {'early:kernel':>12} {'early:/init':>11} {'service:kernel':>14} "
            f"{'service:/init':>13} {'service/early':>13}")  # fmt: skip
    print(head)
    for r in rows:
        e_rel = _diff(r["early_load"], r["early_init"])
        s_rel = _diff(r["service_load"], r["service_init"])
        ratio = f"{s_rel / e_rel:.0f}x" if e_rel and s_rel else "-"
        print(f"{r['kernel']:28} {_fmt(r['early_load']):>12} {_fmt(e_rel):>11} "
              f"{_fmt(r['service_load']):>14} {_fmt(s_rel):>13} {ratio:>13}")  # fmt: skip
    print("\nSystem initramfs size (MiB; growth = capture kernel + capture initramfs + kexec)")
    print(f"{'kernel':28} {'before':>8} {'after':>8} {'growth':>8} {'vmlinuz':>8} "
          f"{'capture':>8} {'kexec+libs':>10}")  # fmt: skip
    for r in rows:
        before, after, vmlinuz, capture, kexec = (
            int(str(r[k])) / MiB
            for k in ("size_before", "size_after", "vmlinuz", "capture_initrd", "kexec")
        )
        print(f"{r['kernel']:28} {before:8.1f} {after:8.1f} {after - before:8.1f} "
              f"{vmlinuz:8.1f} {capture:8.1f} {kexec:10.2f}")  # fmt: skip
    print("(vmlinuz/capture/kexec+libs: uncompressed bytes inside the zstd system initramfs)")


def main(argv: list[str]) -> int:
    root = None
    if argv[:1] == ["--workdir"]:
        root, argv = Path(argv[1]), argv[2:]
    kernels = argv or ["6.1"]
    root = root or Path(tempfile.mkdtemp(prefix="early-bench-"))
    rows = []
    for name in kernels:
        print(f"measuring {name} in {root / name} ...", flush=True)
        rows.append(measure(name, root))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
