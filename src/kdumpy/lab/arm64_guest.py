"""An arm64 guest that runs kdumpy's own service: Debian arm64 packages unpacked with dpkg -x.

The x86_64 Debian guest is debootstrapped (:mod:`kdumpy.lab.debian`); an arm64 one would need
debootstrap's second stage run in an emulated arm64 machine.  kdumpy's service and capture
need no package to be configured, only their files, so this guest is the closure of a few
packages (python3 with numpy, zstandard and lzo, util-linux, kmod, busybox-static; apt
resolves the dependencies against an empty dpkg database) unpacked with ``dpkg -x``, a lab
kernel installed in /boot and /lib/modules, and a small init in place of systemd.

Boot: a busybox initramfs loads the virtio and ext4 modules and switches to the root disk
(``/dev/vda``, a qcow2 overlay of the cached ext4 image); ``/sbin/kdumpy-lab-init`` mounts
the pseudo filesystems and runs the job from the ``KDUMPYJOB`` disk exactly as the x86_64
guest's job unit does (:mod:`kdumpy.lab.debian_job`), then crashes or powers off.  So
``kdumpy start`` builds the capture initramfs in the guest from the guest's own arm64 files
(python3, busybox, modules) and loads it: kexec_file_load gives ENOSYS on Debian's arm64
kernels and the service switches to kdumpy's kexec_load loader.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.arm64 import add_busybox, userspace_root
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.debian import STALE_IMAGE_AGE
from kdumpy.lab.debian_config import GUEST_KDUMPY, JOB_BODY, JOB_LABEL
from kdumpy.lab.debian_job import (
    Job,
    JobResult,
    boot_once_more_if_stock_boot_died,
    job_output,
    make_job_disk,
    overlay,
)
from kdumpy.lab.initramfs import Stage
from kdumpy.lab.kernels import AptSuite, LabKernel
from kdumpy.lab.qemu import Disk, GuestRun, parse_size, run_guest

SUITE = "bookworm"
# What kdumpy's service and capture run in the guest; apt adds their dependencies.
PACKAGES = (
    "python3", "python3-numpy", "python3-zstandard", "python3-lzo", "python3-rich",
    "busybox-static",
    "bash", "libc-bin", "util-linux", "mount", "kmod",
    # Early kdump (tests/early/test_arm64_early.py): the system initramfs generator and the
    # early stage's loader, with the tools mkinitramfs runs.
    "initramfs-tools", "kexec-tools", "coreutils", "findutils", "cpio", "zstd", "dash", "grep",
    "sed", "gzip",
)  # fmt: skip
BUILD = "3"  # bump when the tree's lab files change
IMAGE_SIZE = "1G"
GUEST_CMDLINE = "console=ttyAMA0 root=/dev/vda rw panic=1"
BOOT_MODULES = ["virtio_pci", "virtio_blk", "ext4"]

# The first kernel's initramfs: modules for the root disk, then the root's own init.
BOOT_INIT = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules-load); do insmod "/lib/modules/$m" || echo "insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || { echo "kdumpy-lab: no root disk"; poweroff -f; }
umount /dev /proc
exec switch_root /newroot /sbin/kdumpy-lab-init
"""

# The root's init (PID 1): the x86_64 guest's job runner without systemd.  /bin/sh is dash:
# busybox's sh runs its own applets before PATH's programs, and mkinitramfs needs GNU find,
# realpath and dpkg; busybox stays for what no package here provides (poweroff without
# systemd).
ROOT_INIT = f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
echo kdumpy-guest > /proc/sys/kernel/hostname
echo "KDUMPY-INIT"
dev=$(findfs LABEL={JOB_LABEL}) || {{ echo "kdumpy-lab-init: no job disk"; busybox poweroff -f; }}
mkdir -p /run/kdumpy-job
mount "$dev" /run/kdumpy-job || busybox poweroff -f
{JOB_BODY}busybox poweroff -f
"""

FILES = {
    "etc/hostname": "kdumpy-guest\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 kdumpy-guest\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/fstab": "/dev/vda / ext4 rw 0 1\n",
    "sbin/kdumpy-lab-init": ROOT_INIT,
    "usr/local/bin/kdumpy": '#!/bin/sh\nexec python3 -m kdumpy "$@"\n',
    "usr/lib/python3/dist-packages/kdumpy-lab.pth": GUEST_KDUMPY + "\n",
    # As the x86_64 guest's: only the lab machine's drivers, so the initrd stays small.
    "etc/initramfs-tools/conf.d/kdumpy-lab.conf": "MODULES=list\nCOMPRESS=zstd\n",
    "etc/initramfs-tools/modules": "virtio_pci\nvirtio_blk\next4\n",
}
EXECUTABLES = ("sbin/kdumpy-lab-init", "usr/local/bin/kdumpy")


def guest_dir() -> Path:
    path = cache_root() / "arm64-guest"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tree_key() -> str:
    return hashlib.sha256("\n".join((BUILD, *PACKAGES, *FILES.values())).encode()).hexdigest()[:10]


def rootfs() -> Path:
    """The unpacked packages with the lab's init and settings, no kernel yet (cached)."""
    root = guest_dir() / f"rootfs-{_tree_key()}"
    done = root / ".kdumpy-lab" / "complete"
    if done.exists():
        return root
    with locked("arm64-guest-rootfs"):
        if done.exists():
            return root
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        apt = AptSuite(SUITE, "arm64")
        apt.update()
        names = apt.closure(list(PACKAGES))
        with tempfile.TemporaryDirectory(dir=guest_dir()) as tmp:
            for deb in apt.download_all(names, Path(tmp)):
                subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
        _configure(partial)
        precompile(partial, ["usr/lib/python3.11", "usr/lib/python3/dist-packages"])
        (partial / ".kdumpy-lab").mkdir()
        (partial / ".kdumpy-lab" / "packages").write_text("\n".join(names) + "\n")
        partial.rename(root)
        done.touch()
        _drop_stale(root.name)
    return root


def _drop_stale(current: str) -> None:
    """Trees of earlier BUILDs, and their images once no running guest can still use them
    as an overlay's backing file (after STALE_IMAGE_AGE, as the Debian guest's)."""
    for old in guest_dir().glob("rootfs-*"):
        if old.name != current and not old.name.endswith(".partial"):
            shutil.rmtree(old, ignore_errors=True)
    key = current.removeprefix("rootfs-")
    for image in guest_dir().glob("root-*.raw"):
        stale = time.time() - image.stat().st_mtime > STALE_IMAGE_AGE
        if stale and not image.name.startswith(f"root-{key}-"):
            image.unlink(missing_ok=True)


def _configure(root: Path) -> None:
    """What dpkg's maintainer scripts and alternatives would have made, and the lab files."""
    sh = root / "bin" / "sh"
    if not os.path.lexists(sh):
        sh.symlink_to("busybox")  # no dash in the packages: busybox's ash is the shell
    # update-alternatives' links: awk (update-initramfs runs it), the BLAS/LAPACK numpy
    # links against.
    awk = root / "usr/bin/awk"
    if not os.path.lexists(awk) and (root / "usr/bin/mawk").exists():
        awk.symlink_to("mawk")
    multiarch = root / "usr/lib/aarch64-linux-gnu"
    for sub in ("blas", "lapack"):
        for lib in (multiarch / sub).glob("lib*.so.3"):
            link = multiarch / lib.name
            if not os.path.lexists(link):
                link.symlink_to(f"{sub}/{lib.name}")
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel in EXECUTABLES:
        (root / rel).chmod(0o755)
    dirs = ("proc", "sys", "dev", "run", "tmp", "root", "var/crash", "opt/kdumpy/src",
            "var/lib/initramfs-tools", "var/tmp")  # fmt: skip
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for sticky in ("tmp", "var/tmp"):
        (root / sticky).chmod(0o1777)


def precompile(root: Path, dirs: list[str], prefix: str = "/") -> None:
    """Byte code for the guest's Python modules, made on the host: dpkg -x skips the
    maintainer scripts that compile them (py3compile), and compiling at every import costs
    minutes under emulation.  The host's 3.11 writes what Debian's 3.11 reads (one magic
    number per minor release).  Timestamp .pyc files, as py3compile writes: mkfs.ext4 -d and
    cp -a keep the sources' mtimes, and the service reuses them for the capture initramfs
    (pyruntime.cached_bytecode).  *prefix*: where *root* is in the guest."""
    if sys.version_info[:2] != (3, 11):
        return  # the guest compiles for itself, slowly
    for rel in dirs:
        # Some files do not compile on purpose (lib2to3's test data): the status is moot.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(root),
             "-p", prefix, str(root / rel)],
            capture_output=True, check=False,
        )  # fmt: skip


def base_image(kernel: LabKernel) -> Path:
    """The ext4 image of the tree with *kernel* in /boot and /lib/modules (cached)."""
    root = rootfs()
    image = guest_dir() / f"root-{_tree_key()}-{kernel.release}.raw"
    if image.exists():
        return image
    with locked(f"arm64-guest-image-{kernel.release}"):
        if image.exists():
            return image
        with tempfile.TemporaryDirectory(dir=guest_dir()) as tmp:
            tree = Path(tmp) / "tree"
            # Hard links: the cached tree and kernel stay as they are, nothing is copied twice.
            subprocess.run(["cp", "-al", str(root), str(tree)], check=True)
            boot = tree / "boot"
            boot.mkdir(exist_ok=True)
            shutil.copy2(kernel.vmlinuz, boot / f"vmlinuz-{kernel.release}")
            shutil.copy2(kernel.config_file, boot / f"config-{kernel.release}")
            modules = tree / "lib/modules" / kernel.release
            modules.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(kernel.modules_dir), str(modules)], check=True)
            for link in ("build", "source"):
                if (modules / link).is_symlink():
                    (modules / link).unlink()
            partial = image.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            proc = subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-L", "kdumpyroot", "-d", str(tree), str(partial),
                 IMAGE_SIZE], capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                raise KdumpyError(f"mkfs.ext4 of the arm64 guest image failed: {proc.stderr}")
            os.replace(partial, image)
        _drop_stale(root.name)
    return image


def boot_initrd(kernel: LabKernel) -> Path:
    """The first kernel's initramfs: arm64 busybox and the root disk's modules (cached)."""
    key = hashlib.sha256(f"{kernel.release}\0{BOOT_INIT}".encode()).hexdigest()[:12]
    out = guest_dir() / f"boot-{kernel.release}-{key}.img"
    if out.exists():
        return out
    with locked(f"arm64-guest-boot-{key}"):
        if not out.exists():
            with Stage() as stage:
                add_busybox(stage, userspace_root())
                loaded = stage.add_modules(kernel, BOOT_MODULES)
                stage.add_text("etc/modules-load", "\n".join(loaded) + "\n")
                stage.add_text("init", BOOT_INIT, 0o755)
                stage.build(out)
    return out


def _compile_kdumpy(tree: Path) -> None:
    """Byte code for the job disk's copy of kdumpy (the guest copies it to GUEST_KDUMPY)."""
    precompile(tree, ["src"], str(Path(GUEST_KDUMPY).parent))


def run_job(job: Job, workdir: Path, kernel: LabKernel, initrd: Path | None = None) -> JobResult:
    """Boot the arm64 guest on *kernel*, run *job*, wait for the VM to end, read out/.
    *initrd*: the first kernel's initramfs (default the lab's :func:`boot_initrd`; the early
    kdump test boots the one initramfs-tools made in the guest)."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = base_image(kernel)
    root = overlay(base, job.root_overlay or workdir / "root.qcow2", job.root_overlay is not None)
    disks = [Disk(root, "qcow2"), Disk(make_job_disk(job, workdir, _compile_kdumpy)), *job.disks]
    append = f"{GUEST_CMDLINE} crashkernel={job.crashkernel} {job.extra_cmdline}".strip()
    # No network: the guest has no DHCP client, and a local target needs none.

    def boot() -> GuestRun:
        return run_guest(
            kernel=kernel.vmlinuz,
            initrd=initrd or boot_initrd(kernel),
            append=append,
            memory=parse_size(job.memory),
            serial_log=workdir / "serial.log",
            disks=disks,
            timeout=job.timeout,
            markers=("Run /init", "KDUMPY-INIT", *job.markers),
            extra_args=job.extra_args,
            arch="arm64",
        )

    def fresh_root() -> None:
        overlay(base, root)

    stock = job.root_overlay is None and initrd is None
    run = boot_once_more_if_stock_boot_died(boot, fresh_root, stock, workdir)
    return JobResult(run, job_output(disks[1].path, workdir))


def merged_usr_links(root: Path) -> None:
    """/lib, /bin and /sbin as links into /usr where the packages ship only /usr (trixie's are
    merged-/usr; base-files makes the links, and dpkg -x runs no maintainer script)."""
    for top in ("lib", "bin", "sbin"):
        if not os.path.lexists(root / top) and (root / "usr" / top).is_dir():
            (root / top).symlink_to(f"usr/{top}")


def arm64_makedumpfile(suite: str = SUITE) -> list[str]:
    """Debian's arm64 makedumpfile from *suite* (the kernel's: bookworm's 1.7.2 rejects the
    4K-page 52-bit VA layout of trixie's kernel) run on the host by qemu-user, as a command
    prefix: an x86_64 makedumpfile reads only x86_64 dumps.  Its own tree (unpacked once),
    apart from the guest's: the oracle shares no file with what it checks."""
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        raise KdumpyError("qemu-aarch64 not found: install qemu-user (runs arm64 makedumpfile)")
    root = guest_dir() / f"makedumpfile-{suite}"
    done = root / ".complete"
    if not done.exists():
        with locked(f"arm64-makedumpfile-{suite}"):
            if not done.exists():
                shutil.rmtree(root, ignore_errors=True)
                apt = AptSuite(suite, "arm64")
                apt.update()
                with tempfile.TemporaryDirectory(dir=guest_dir()) as tmp:
                    for deb in apt.download_all(apt.closure(["makedumpfile"]), Path(tmp)):
                        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
                merged_usr_links(root)
                done.touch()
    return [qemu, "-L", str(root), str(root / "usr/bin/makedumpfile")]
