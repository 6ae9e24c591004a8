"""The arm64 lab guest's userspace: busybox and a small Python from Debian's arm64 packages.

The first kernel loads its capture kernel with kdumpy's own kexec_load loader
(:mod:`kdumpy.arch.arm64.kexec_load`), so its initramfs carries an arm64 Python: Debian's
python3.11-minimal with the few standard-library modules the loader imports beyond it
(found on the host with :mod:`modulefinder`, which is the same 3.11 as bookworm's), the
libraries they link, and kdumpy's modules the loader imports.
The first kernel runs the x86_64 lab's workload (its C helper cross-compiled with
aarch64-linux-gnu-gcc).  The capture kernel's userspace is busybox alone: ``dd`` with
O_DIRECT from /proc/vmcore to the raw disk (buffered writes crawl under emulation).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import py_compile
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import kdumpy
from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.initramfs import Stage, find_busybox
from kdumpy.lab.kernels import AptSuite, LabKernel
from kdumpy.lab.userspace import COMMON_PRELUDE, BusyboxWorkload, build_workload

SUITE = "bookworm"
PACKAGES = (
    "busybox-static",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "liblzma5",
)
# What runs in the guest: the loader's entry, without runpy (-m) or site (-S).
LOADER_ENTRY = "from kdumpy.arch.arm64.kexec_load import main; raise SystemExit(main())"
# Imported at startup even with -S (the host probe imports them explicitly).
LOADER_MODULES = ("encodings.utf_8", "encodings.ascii", "encodings.latin_1", "io", "os")
PYTHONPATH = "/opt/kdumpy"
CAPTURE_APPEND = "console=ttyAMA0 irqpoll nr_cpus=1 reset_devices panic=1 kdumpy.role=capture"
VIRTIO_DISK = ["virtio_pci", "virtio_blk"]
CROSS_GCC = "aarch64-linux-gnu-gcc"  # builds the workload helper (gcc-aarch64-linux-gnu)
# Crash methods of the x86_64 workload the arm64 guest has: no test module (no arm64 build
# of it) and no PS/2 keyboard for "irq" on -M virt.
CRASH_METHODS = ("sysrq", "oom", "hung", "init", "none")
BUILD = "3"  # bump when add_python ships something else: cached initramfs images are rebuilt


def userspace_root() -> Path:
    """Debian's arm64 busybox, Python and libraries, unpacked once into the lab cache."""
    root = cache_root() / "userspace" / f"{SUITE}-arm64"
    done = root / ".complete"
    if done.exists():
        return root
    with locked(f"userspace-{SUITE}-arm64"):
        if done.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        apt = AptSuite(SUITE, "arm64")
        apt.update()
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            for package in PACKAGES:
                deb = apt.download(package, Path(tmp))
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        done.write_text("\n".join(PACKAGES) + "\n")
    return root


def add_busybox(stage: Stage, root: Path) -> None:
    """arm64 busybox with a link per applet (the host's busybox of the same release names
    them: the arm64 binary does not run here)."""
    stage.add_file(root / "bin" / "busybox", "bin/busybox", 0o755)
    applets = subprocess.run(
        [str(find_busybox()), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = stage.root / applet
        if link.name == "busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def _source_roots() -> tuple[Path, ...]:
    """Where the host finds kdumpy: the guest gets its modules under PYTHONPATH."""
    return (Path(inspect.getfile(kdumpy)).parent.parent,)


def loader_modules() -> dict[str, Path]:
    """Every module the loader imports, by name, with its file on the host: taken from a
    host Python that imports it (the real import graph, namespace packages included)."""
    probe = (
        f"import {', '.join(LOADER_MODULES)}, sys\n"
        "sys.modules['zstandard'] = None  # optional, and absent from the guest\n"
        "import contextlib, io, kdumpy.arch.arm64.kexec_load as k\n"
        "with contextlib.redirect_stderr(io.StringIO()):  # run it: argparse imports lazily\n"
        "    k.main(['--kernel', '/nonexistent/vmlinuz'])\n"
        "for name, mod in sorted(sys.modules.items()):\n"
        "    path = getattr(mod, '__file__', None)\n"
        "    if path: print(name, path)\n"
    )
    path = os.pathsep.join(str(p) for p in _source_roots())
    proc = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise KdumpyError(f"importing the arm64 loader on the host failed: {last}")
    return {n: Path(f) for n, f in (ln.split(" ", 1) for ln in proc.stdout.splitlines())}


def add_python(stage: Stage, root: Path) -> None:
    """arm64 python3 (minimal stdlib plus what the loader imports) and the loader's sources."""
    stage.add_file(root / "usr/bin/python3.11", "usr/bin/python3", 0o755)
    for libdir in ("lib", "usr/lib"):
        for lib in (root / libdir).glob("ld-linux-aarch64.so*"):
            stage.add_file(lib, f"lib/{lib.name}", 0o755)
        multiarch = root / libdir / "aarch64-linux-gnu"
        if multiarch.is_dir():
            for lib in multiarch.glob("*.so*"):
                stage.add_file(lib, f"{libdir}/aarch64-linux-gnu/{lib.name}")
    guest_lib = root / "usr/lib/python3.11"
    host_lib = Path(sysconfig.get_paths()["stdlib"])
    ours = _source_roots()
    python = (root / "usr/bin/python3.11").read_bytes()
    for name, path in loader_modules().items():
        if path.suffix == ".so":
            arm = Path("lib-dynload", path.name.replace("x86_64-linux-gnu", "aarch64-linux-gnu"))
            if not (guest_lib / arm).exists() and f"PyInit_{name}".encode() in python:
                continue  # built into Debian's python3.11
            _copy_stdlib(stage, guest_lib, arm, name)
            continue
        for base in ours:
            if path.is_relative_to(base):
                stage.add_file(path, f"{PYTHONPATH}/{path.relative_to(base)}")
                break
        else:
            if not path.is_relative_to(host_lib):
                raise KdumpyError(f"the arm64 loader imports {name} from {path}: not shippable")
            _copy_stdlib(stage, guest_lib, path.relative_to(host_lib), name)
    _precompile(stage)


def _precompile(stage: Stage) -> None:
    """Bytecode for every module shipped, so the emulated guest does not compile them at each
    boot (a few seconds under TCG).  The host's 3.11 writes the bytecode Debian's 3.11 reads
    (one magic number per minor release); unchecked-hash .pyc files do not depend on mtimes."""
    for tree in (stage.root / "usr/lib/python3.11", stage.root / PYTHONPATH.lstrip("/")):
        for source in tree.rglob("*.py"):
            cfile = importlib.util.cache_from_source(str(source))
            py_compile.compile(
                str(source),
                cfile=cfile,
                dfile="/" + str(source.relative_to(stage.root)),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )


def _copy_stdlib(stage: Stage, guest_lib: Path, rel: Path, name: str) -> None:
    src = guest_lib / rel
    if not src.exists():
        raise KdumpyError(f"Debian's arm64 Python has no {rel} (module {name})")
    stage.add_file(src, f"usr/lib/python3.11/{rel}")


class Arm64Capture:
    """Capture userspace: copy /proc/vmcore to the first virtio disk with O_DIRECT, power off."""

    name = "arm64-dd"

    def fingerprint(self) -> str:
        return self.name + self.script()

    def script(self) -> str:
        return (
            COMMON_PRELUDE
            + """
log "capture kernel up"
if [ ! -e /proc/vmcore ]; then log "capture failed: no /proc/vmcore"; poweroff -f; fi
log "vmcore size $(stat -c %s /proc/vmcore)"
count=""; [ "$(param save)" = head ] && count="count=1"
if dd if=/proc/vmcore of=/dev/vda bs=1M $count oflag=direct 2>/tmp/dd.err; then
    sync
    log "vmcore saved"
else
    log "capture failed: $(tail -n 1 /tmp/dd.err)"
fi
poweroff -f
"""
        )

    def populate(self, stage: Stage, kernel: LabKernel) -> None:
        add_busybox(stage, userspace_root())
        loaded = stage.add_modules(kernel, VIRTIO_DISK)
        stage.add_text("etc/modules-load", "\n".join(loaded) + "\n")
        stage.add_text("init", self.script(), 0o755)


class Arm64Workload(BusyboxWorkload):
    """First-kernel userspace: the x86_64 lab's workload (the same helper, cross-compiled),
    with the capture kernel loaded by kdumpy's kexec_load loader instead of kexec-tools
    (Debian 12's kexec-tools writes a broken ELF core header on this kernel: reach.md 7).
    """

    name = "arm64-workload"
    modules = [*VIRTIO_DISK, "ext4"]

    def __init__(self, capture_initrd: Path, capture_append: str = CAPTURE_APPEND) -> None:
        super().__init__(capture_initrd, capture_append)

    def fingerprint(self) -> str:
        sources = sorted(p.read_text() for p in loader_modules().values() if p.suffix == ".py")
        return "\0".join((super().fingerprint(), BUILD, *sources))

    def load_script(self) -> str:
        append = shlex.quote(self.capture_append)
        entry = shlex.quote(LOADER_ENTRY)
        return f"""append={append}
save=$(param save)  # the capture kernel's own choice travels on its command line
[ -n "$save" ] && append="$append kdumpy.save=$save"
if PYTHONPATH={PYTHONPATH} python3 -S -c {entry} --kernel /boot/vmlinuz \\
        --initrd /boot/capture.img --append="$append" >/tmp/load.out 2>/tmp/load.err; then
    cat /tmp/load.out
    log "capture kernel loaded ($(cat /sys/kernel/kexec_crash_loaded))"
else
    log "kexec load failed: $(tail -n 1 /tmp/load.err)"
fi"""

    def populate(self, stage: Stage, kernel: LabKernel) -> None:
        root = userspace_root()
        add_busybox(stage, root)
        add_python(stage, root)
        loaded = stage.add_modules(kernel, self.modules)
        stage.add_text("etc/modules-load", "\n".join(loaded) + "\n")
        build_workload(stage.root / "bin" / "workload", CROSS_GCC, "gcc-aarch64-linux-gnu")
        stage.add_file(kernel.vmlinuz, "boot/vmlinuz")
        stage.add_file(self.capture_initrd, "boot/capture.img")
        stage.add_text("init", self.script(), 0o755)
