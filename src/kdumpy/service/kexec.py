"""Load and unload the capture kernel: the kexec_file_load system call, straight from Python.

``kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags)``, its number per
machine from the architecture layer (:mod:`kdumpy.arch.kdump`).  The kernel reads and
verifies the image itself (this is what Secure Boot and lockdown require).  Only when the
kernel lacks it (ENOSYS) do we fall back to the older kexec_load path: kdumpy's own loader
where the architecture layer has one (arm64, see :mod:`kdumpy.arch.kexec`), else
kexec-tools' ``kexec -p``.  Unloading without kexec-tools uses KEXEC_FILE_UNLOAD, or
kexec_load with no segments on kernels without file load.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import shutil
import subprocess
from pathlib import Path

from kdumpy.arch.kdump_select import this_machine
from kdumpy.arch.kexec import legacy_loader
from kdumpy.errors import KdumpyError

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4
KEXEC_ON_CRASH = 0x1
KEXEC_ARCH_DEFAULT = 0
SYSFS_KERNEL = Path("/sys/kernel")

_ERRORS = {
    errno.EPERM: "not permitted (root needed, or kexec disabled by kernel.kexec_load_disabled)",
    errno.ENOEXEC: "the kernel image format is not supported, or its signature was rejected",
    errno.EKEYREJECTED: "the kernel image's signature was rejected (Secure Boot/lockdown)",
    errno.ENOMEM: "the kernel and initramfs do not fit in the crashkernel reservation",
    errno.EBUSY: "a kexec operation is already in progress",
    errno.EINVAL: "invalid arguments (command line too long, or no crashkernel memory)",
}


class KexecError(KdumpyError):
    """Loading or unloading the capture kernel failed."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall_number(name: str) -> int:
    """The number of the system call *name* here (from :mod:`kdumpy.arch`)."""
    machine = this_machine()
    number = machine.sys_kexec_file_load if name == "kexec_file_load" else machine.sys_kexec_load
    if number is None:
        raise KexecError(f"kexec system calls are not known for {platform.machine()}")
    return number


def crash_loaded() -> bool:
    """Whether a capture kernel is loaded (/sys/kernel/kexec_crash_loaded)."""
    try:
        return (SYSFS_KERNEL / "kexec_crash_loaded").read_text().strip() == "1"
    except OSError:
        return False


def crash_supported() -> bool:
    return (SYSFS_KERNEL / "kexec_crash_loaded").exists()


def crash_size() -> int:
    """Bytes reserved for the capture kernel (/sys/kernel/kexec_crash_size), 0 if none."""
    try:
        return int((SYSFS_KERNEL / "kexec_crash_size").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def file_load(kernel: Path, initrd: Path | None, cmdline: str) -> None:
    """Load the capture kernel with kexec_file_load; raise KexecError (errno in .errno)."""
    number = _syscall_number("kexec_file_load")
    arg = cmdline.encode() + b"\0"
    flags = KEXEC_FILE_ON_CRASH | (KEXEC_FILE_NO_INITRAMFS if initrd is None else 0)
    kernel_fd = _open(kernel)
    initrd_fd = _open(initrd) if initrd is not None else -1
    try:
        buf = ctypes.create_string_buffer(arg)
        ret = _libc().syscall(
            ctypes.c_long(number),
            ctypes.c_int(kernel_fd),
            ctypes.c_int(initrd_fd),
            ctypes.c_ulong(len(arg)),
            buf,
            ctypes.c_ulong(flags),
        )
        if ret != 0:
            _raise("kexec_file_load", ctypes.get_errno())
    finally:
        os.close(kernel_fd)
        if initrd_fd >= 0:
            os.close(initrd_fd)


def file_unload() -> None:
    """Unload the capture kernel with kexec_file_load(KEXEC_FILE_UNLOAD)."""
    number = _syscall_number("kexec_file_load")
    ret = _libc().syscall(
        ctypes.c_long(number),
        ctypes.c_int(-1),
        ctypes.c_int(-1),
        ctypes.c_ulong(0),
        ctypes.c_void_p(None),
        ctypes.c_ulong(KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH),
    )
    if ret != 0:
        _raise("kexec_file_load unload", ctypes.get_errno())


def legacy_unload() -> None:
    """Unload with kexec_load(entry 0, no segments, KEXEC_ON_CRASH)."""
    number = _syscall_number("kexec_load")
    ret = _libc().syscall(
        ctypes.c_long(number),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_void_p(None),
        ctypes.c_ulong(KEXEC_ON_CRASH | KEXEC_ARCH_DEFAULT),
    )
    if ret != 0:
        _raise("kexec_load unload", ctypes.get_errno())


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KexecError(f"{path}: cannot open: {exc.strerror}") from None


def _raise(call: str, err: int) -> None:
    reason = _ERRORS.get(err, os.strerror(err))
    exc = KexecError(f"{call} failed: {reason} ({errno.errorcode.get(err, err)})")
    exc.errno = err  # type: ignore[attr-defined]
    raise exc


_FILE_LOAD_FLAGS = (
    "-s", "--kexec-file-syscall", "-a", "--kexec-syscall-auto", "-c", "--kexec-syscall",
)  # fmt: skip


def tools_load(kernel: Path, initrd: Path | None, cmdline: str, extra: list[str]) -> None:
    """Fallback: kexec-tools' ``kexec -p`` (kexec_load), for kernels without file load."""
    kexec = shutil.which("kexec")
    if kexec is None:
        raise KexecError("kexec_file_load is not available and kexec-tools is not installed")
    # kexec_file_load is what just failed: make kexec-tools use kexec_load (-c), whatever
    # KEXEC_ARGS says (RHEL's default is -s, which would try the file load again).
    args = [a for a in extra if a not in _FILE_LOAD_FLAGS]
    cmd = [kexec, "-p", "-c", *args, f"--command-line={cmdline}"]
    if initrd is not None:
        cmd.append(f"--initrd={initrd}")
    cmd.append(str(kernel))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KexecError(f"kexec -p failed: {proc.stderr.strip() or proc.returncode}")


def load(kernel: Path, initrd: Path | None, cmdline: str, kexec_args: list[str]) -> str:
    """Load the capture kernel; return the method used ("kexec_file_load", "kexec_load"
    for kdumpy's own loader, or "kexec -p")."""
    try:
        file_load(kernel, initrd, cmdline)
        return "kexec_file_load"
    except KexecError as exc:
        if getattr(exc, "errno", None) != errno.ENOSYS:
            raise
    loader = legacy_loader(platform.machine())
    if loader is not None:
        try:
            loader(kernel, initrd, cmdline)
        except KdumpyError as exc:
            raise KexecError(f"kexec_load: {exc}") from None
        return "kexec_load"
    tools_load(kernel, initrd, cmdline, kexec_args)
    return "kexec -p"


def unload() -> None:
    """Unload the capture kernel, whichever way it was loaded."""
    try:
        file_unload()
    except KexecError as exc:
        if getattr(exc, "errno", None) != errno.ENOSYS:
            raise
        legacy_unload()
