"""A real Debian bookworm guest for end-to-end kdump tests.

The image is built in cached stages under ``<lab cache>/debian/``:

1. ``rootfs/``: ``debootstrap`` of bookworm with systemd, initramfs-tools and what kdump
   needs in the first kernel (kexec-tools, ssh and NFS clients, mkfs tools, python3 with
   kdumpy's dependencies).  Configured for a headless serial console, DHCP on the user
   network, and the ``kdumpy-lab-job`` unit (see :mod:`kdumpy.lab.debian_job`).
2. ``rootfs/lib/modules/<release>`` and ``rootfs/boot/initrd.img-<release>``: each lab
   kernel installed from the lab's unpacked Debian packages, its initrd made by the
   distribution's own ``update-initramfs`` inside the chroot.
3. ``root-<stamp>.raw``: an ext4 image of the tree (``mkfs.ext4 -d``, no loop device), rebuilt
   only when the tree changed.  Each run boots a qcow2 overlay of it, so runs never
   modify the cached image.

A variant whose initramfs generator is dracut (``generator="dracut"``: RHEL's
generator, with the systemd initrd) lives beside it: ``rootfs-dracut/`` is a copy of the
configured ``rootfs/`` without its kernels, with Debian's ``dracut`` package installed
(which removes initramfs-tools); its kernels' initrds are made by ``dracut`` in the chroot
and its image is ``root-dracut-<stamp>.raw``.  The initramfs-tools tree, its stamps and
its image are untouched by it.

kdumpy itself is not baked into the image: every run's job disk carries the working tree
and the job unit copies it to ``/opt/kdumpy`` (found by python3 through a ``.pth``), so a
code change needs no image rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.debian_config import chroot, configure_rootfs
from kdumpy.lab.kernels import LabKernel

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
IMAGE_SIZE = "4G"
STALE_IMAGE_AGE = 6 * 3600  # seconds; see base_image
# What the first kernel needs for kdump, its targets, and kdumpy's own imports.
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "initramfs-tools", "kmod", "procps",
    "iproute2", "util-linux", "e2fsprogs", "xfsprogs", "btrfs-progs", "kexec-tools",
    "makedumpfile", "openssh-client", "nfs-common", "busybox-static", "cpio", "zstd",
    "python3", "python3-numpy", "python3-cffi-backend", "python3-zstandard", "python3-lzo",
    "python3-rich",
    # `kdumpy reserve` runs the real update-grub (grub-mkconfig).  No grub-pc: its
    # postinst wants an install device, and /etc/default/grub stays absent from the image
    # (a job copies grub's template there, as grub-pc's postinst would).
    "grub2-common", "grub-pc-bin",
    # Storage stacks under a dump target (issue 13): LVM (thin pools need thin_check to
    # activate in the first kernel), md RAID, LUKS.
    "lvm2", "thin-provisioning-tools", "mdadm", "cryptsetup-bin",
    # iSCSI LUNs (open-iscsi: iscsiadm and iscsid in the first kernel, iscsistart for
    # the capture initramfs).
    "open-iscsi",
    # kdumpy's page packer (kdumpy.collect._pagepack, on the job disk with the tree) links
    # them, and the capture initramfs then ships them instead of numpy and the Python
    # compression bindings (pyruntime.capture_leave_out): named here, not left to come
    # with makedumpfile, btrfs-progs or python3-lzo.
    "liblzo2-2", "libsnappy1v5", "libzstd1", "zlib1g",
)  # fmt: skip
# Bump when the guest configuration below changes: it invalidates the cached rootfs.
CONFIG_VERSION = "3"

INITRAMFS_TOOLS = "initramfs-tools"
DRACUT = "dracut"
# The dracut variant: installed over a copy of the initramfs-tools tree (apt removes
# initramfs-tools, which conflicts with dracut).
DRACUT_PACKAGES = ("dracut",)
# Like initramfs-tools' MODULES=list: only the lab machine's drivers (``drivers`` is
# exclusive), not this build host's devices (no hostonly), no early microcode cpio (the
# image is one zstd cpio, which GNU cpio lists on the host).  zstd -1 as initramfs-tools
# compresses (dracut's own zstd -15 costs tens of seconds under TCG), and no dracut
# modules for storage the lab guest does not have: both keep ``dracut -f`` in the guest short.
DRACUT_CONF = """hostonly="no"
drivers=" virtio_pci virtio_blk virtio_net ext4 "
compress="zstd -1 -q -T0"
early_microcode="no"
omit_dracutmodules+=" btrfs crypt dm lvm mdraid multipath nvdimm lunmask resume virtfs "
omit_dracutmodules+=" virtiofs overlay-root modsign terminfo usrmount kernel-modules-extra "
omit_dracutmodules+=" plymouth "
"""
DRACUT_CONF_PATH = "etc/dracut.conf.d/10-kdumpy-lab.conf"


def debian_dir() -> Path:
    path = cache_root() / "debian"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: list[str], what: str, timeout: float = 3600, **kw: object) -> str:
    """Run a build step; a failure is one KdumpyError line with the tool's last words."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise KdumpyError(f"{what}: {cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise KdumpyError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise KdumpyError(f"{what} failed: {lines[-1] if lines else proc.returncode}")
    return str(proc.stdout)


def _stamp(root: Path, name: str) -> Path:
    return root / ".kdumpy-lab" / name


def debootstrap_rootfs(generator: str = INITRAMFS_TOOLS) -> Path:
    """Stage 1: the debootstrapped and configured bookworm tree (cached)."""
    if generator == DRACUT:
        return _dracut_rootfs()
    if generator != INITRAMFS_TOOLS:
        raise KdumpyError(f"unknown initramfs generator {generator!r}")
    root = debian_dir() / "rootfs"
    done = _stamp(root, f"configured-{CONFIG_VERSION}")
    # A grown package list is installed into the existing tree (the kernels' initrds stay).
    packages = _stamp(root, f"packages-{_packages_hash()}")
    if done.exists() and packages.exists():
        return root
    with locked("debian-rootfs"):
        if done.exists() and packages.exists():
            return root
        if not _stamp(root, "debootstrap").exists():
            shutil.rmtree(root, ignore_errors=True)
            partial = root.with_name("rootfs.partial")
            shutil.rmtree(partial, ignore_errors=True)
            # Downloaded .debs survive a failed attempt (debootstrap cannot resume a tree).
            debs = debian_dir() / "debs"
            debs.mkdir(exist_ok=True)
            _run(
                ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                 f"--cache-dir={debs}", SUITE, str(partial), MIRROR],
                "debootstrap of Debian bookworm",
            )  # fmt: skip
            partial.rename(root)
            _stamp(root, "debootstrap").parent.mkdir(exist_ok=True)
            _stamp(root, "debootstrap").touch()
        # The package list grew since the tree was made: install the difference.
        if not packages.exists():
            with _host_resolver(root):
                chroot(root, "apt-get", "update", "-q")
                chroot(root, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                       *PACKAGES)  # fmt: skip
                chroot(root, "apt-get", "clean")
            packages.touch()
        if not done.exists():
            configure_rootfs(root)
            done.touch()
    return root


@contextlib.contextmanager
def _host_resolver(root: Path) -> Iterator[None]:
    """The host's /etc/resolv.conf in the tree meanwhile (a configured tree has the guest's)."""
    conf = root / "etc" / "resolv.conf"
    saved = conf.read_bytes() if conf.exists() and not conf.is_symlink() else None
    if conf.is_symlink():
        conf.unlink()
    shutil.copy("/etc/resolv.conf", conf)
    try:
        yield
    finally:
        if saved is not None:
            conf.write_bytes(saved)


def _packages_hash() -> str:
    return hashlib.sha256(" ".join(sorted(PACKAGES)).encode()).hexdigest()[:8]


def _dracut_hash() -> str:
    """What the dracut tree is made from, beyond the initramfs-tools tree's stamps."""
    inputs = [_packages_hash(), CONFIG_VERSION, *sorted(DRACUT_PACKAGES), DRACUT_CONF]
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:8]


def _dracut_rootfs() -> Path:
    """The configured tree with dracut instead of initramfs-tools, no kernels yet (cached)."""
    root = debian_dir() / "rootfs-dracut"
    done = _stamp(root, f"dracut-{_dracut_hash()}")
    if done.exists():
        return root
    base = debootstrap_rootfs()
    with locked("debian-rootfs-dracut"):
        if done.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        partial = root.with_name("rootfs-dracut.partial")
        shutil.rmtree(partial, ignore_errors=True)
        with locked("debian-rootfs"):  # not while a kernel is being installed in the base
            _run(["cp", "-a", str(base), str(partial)], "copy of the Debian guest tree")
        # Kernels are installed per tree (their initrds are the generator's own work).
        for stamp in (partial / ".kdumpy-lab").glob("kernel-*"):
            stamp.unlink()
        for pattern in ("boot/vmlinuz-*", "boot/initrd.img-*", "boot/config-*"):
            for path in partial.glob(pattern):
                path.unlink()
        for modules in (partial / "usr/lib/modules").glob("*"):
            shutil.rmtree(modules)
        conf = partial / DRACUT_CONF_PATH
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(DRACUT_CONF)
        with _host_resolver(partial):
            chroot(partial, "apt-get", "update", "-q")
            chroot(partial, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                   *DRACUT_PACKAGES)  # fmt: skip
            chroot(partial, "apt-get", "clean")
        if (partial / "usr/sbin/update-initramfs").exists():
            raise KdumpyError("dracut tree: initramfs-tools is still installed")
        partial.rename(root)
        done.touch()
    return root


def install_kernel(kernel: LabKernel, generator: str = INITRAMFS_TOOLS) -> Path:
    """Stage 2: *kernel* installed in the tree with an initrd from update-initramfs (or
    dracut, in the dracut tree).

    Returns the initrd's path in the tree (QEMU boots it with ``-kernel``/``-initrd``; the
    same files sit in the guest's /boot, where ``kdumpy start`` finds the capture kernel).
    """
    root = debootstrap_rootfs(generator)
    initrd = root / "boot" / f"initrd.img-{kernel.release}"
    done = _stamp(root, f"kernel-{kernel.release}-{CONFIG_VERSION}")
    if done.exists() and initrd.exists():
        return initrd
    lock = "debian-rootfs" if generator == INITRAMFS_TOOLS else "debian-rootfs-dracut"
    with locked(lock):
        if done.exists() and initrd.exists():
            return initrd
        modules = root / "usr/lib/modules" / kernel.release
        shutil.rmtree(modules, ignore_errors=True)
        shutil.copytree(kernel.modules_dir, modules, symlinks=True)
        for link in ("build", "source"):
            if (modules / link).is_symlink():
                (modules / link).unlink()
        boot = root / "boot"
        shutil.copy2(kernel.vmlinuz, boot / f"vmlinuz-{kernel.release}")
        shutil.copy2(kernel.config_file, boot / f"config-{kernel.release}")
        chroot(root, "depmod", kernel.release)
        initrd.unlink(missing_ok=True)
        if generator == DRACUT:
            # Debian's name for it, as its kernel postinst hook for dracut writes it.
            chroot(root, "dracut", "-q", "-f", f"/boot/{initrd.name}", kernel.release)
        else:
            chroot(root, "update-initramfs", "-c", "-k", kernel.release)
        done.touch()
    return initrd


def tree_stamp(root: Path) -> str:
    """A short hash of the completed stages: the cached image is valid while it matches."""
    names = sorted(p.name for p in (root / ".kdumpy-lab").iterdir())
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def base_image(kernels: list[LabKernel], generator: str = INITRAMFS_TOOLS) -> Path:
    """Stage 3: the raw ext4 image of the tree with *kernels* installed (cached)."""
    for kernel in kernels:
        install_kernel(kernel, generator)
    root = debootstrap_rootfs(generator)
    prefix = "root-dracut-" if generator == DRACUT else "root-"
    image = debian_dir() / f"{prefix}{tree_stamp(root)}.raw"
    if image.exists():
        return image
    with locked("debian-image"):
        if image.exists():
            return image
        partial = image.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        _run(["mkfs.ext4", "-q", "-F", "-L", "kdumpyroot", "-d", str(root), str(partial),
              IMAGE_SIZE], "mkfs.ext4 of the Debian guest image")  # fmt: skip
        # Older images may still back a running guest's overlay: drop only stale ones.
        for old in debian_dir().glob(f"{prefix}*.raw"):
            if (generator == DRACUT) != old.name.startswith("root-dracut-"):
                continue  # the other generator's images
            if time.time() - old.stat().st_mtime > STALE_IMAGE_AGE:
                old.unlink()
        os.replace(partial, image)
    return image
