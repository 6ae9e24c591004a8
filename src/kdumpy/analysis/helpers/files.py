"""Open files of a task and path names of dentries (``d_path`` across mounts)."""

from __future__ import annotations

from collections.abc import Iterable

from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# S_IFMT file types (include/uapi/linux/stat.h) as crash's files shows them.
_TYPES = {0o140000: "SOCK", 0o120000: "LNK", 0o100000: "REG", 0o060000: "BLK",
          0o040000: "DIR", 0o020000: "CHR", 0o010000: "FIFO"}  # fmt: skip
_MAX_DEPTH = 256


def dentry_name(dentry: Object) -> str:
    """A dentry's own name (the last path component)."""
    return dentry.d_name.name.string_(256).decode("utf-8", "backslashreplace")


def d_path(prog: Program, mnt: Object, dentry: Object) -> str:
    """The path of ``dentry`` seen through mount ``mnt`` (``struct vfsmount *``); with
    a NULL ``mnt``, within the dentry's own filesystem (up to its root dentry)."""
    mount_off = prog.offsetof("struct mount", "mnt")
    parts: list[str] = []
    mnt_addr, dentry_addr = int(mnt), int(dentry)
    for _ in range(_MAX_DEPTH):
        if not dentry_addr:
            break
        vfsmount = prog.object_at("struct vfsmount", mnt_addr) if mnt_addr else None
        if vfsmount is not None and dentry_addr == int(vfsmount.mnt_root):
            mount = prog.object_at("struct mount", mnt_addr - mount_off)
            parent = int(mount.mnt_parent)
            if parent == mnt_addr - mount_off or not parent:
                break
            dentry_addr = int(mount.mnt_mountpoint)
            mnt_addr = parent + mount_off
            continue
        d = prog.object_at("struct dentry", dentry_addr)
        parent_addr = int(d.d_parent)
        if parent_addr == dentry_addr and vfsmount is None:
            break  # the filesystem's root: "/" itself
        parts.append(dentry_name(d))
        if parent_addr == dentry_addr:
            break
        dentry_addr = parent_addr
    return "/" + "/".join(reversed(parts))


def file_type(inode: Object) -> str:
    """crash's name for an inode's file type (``REG``, ``DIR``, ``SOCK`` ...)."""
    return _TYPES.get(int(inode.i_mode) & 0o170000, "UNKN")


def file_path(prog: Program, file: Object) -> str:
    """The path of an open file (``socket:[ino]`` / ``pipe:[ino]`` for those)."""
    path = file.f_path
    inode = file.f_inode
    kind = file_type(inode) if int(inode) else "UNKN"
    if kind in ("SOCK", "FIFO") and not dentry_name(path.dentry).startswith("/"):
        name = dentry_name(path.dentry)
        if not name or kind == "SOCK":
            label = "socket" if kind == "SOCK" else "pipe"
            return f"{label}:[{int(inode.i_ino)}]"
    return d_path(prog, path.mnt, path.dentry)


def task_files(prog: Program, task: Object) -> list[tuple[int, int, int, int, str, str]]:
    """``(fd, file, dentry, inode, type, path)`` for every open descriptor."""
    files = task.files
    if not int(files):
        return []
    fdt = files.fdt
    out = []
    max_fds = min(int(fdt.max_fds), 1 << 16)
    fd_array = int(fdt.fd)
    raw = prog.read(fd_array, 8 * max_fds)
    for fd in range(max_fds):
        address = int.from_bytes(raw[8 * fd : 8 * fd + 8], "little")
        if not address:
            continue
        file = prog.object_at("struct file", address)
        try:
            inode = file.f_inode
            out.append((fd, address, int(file.f_path.dentry), int(inode), file_type(inode),
                        file_path(prog, file)))  # fmt: skip
        except KdumpyError as exc:
            out.append((fd, address, 0, 0, "?", f"({exc})"))
    return out


def task_root_cwd(prog: Program, task: Object) -> tuple[str, str]:
    """``(root, cwd)`` paths of a task (``"?"`` when it has none or they are unreadable)."""
    fs = task.fs
    if not int(fs):
        return "?", "?"
    try:
        return (d_path(prog, fs.root.mnt, fs.root.dentry), d_path(prog, fs.pwd.mnt, fs.pwd.dentry))
    except KdumpyError:
        return "?", "?"


def file_reference_matches(ref: str, fd: int, addresses: Iterable[int], path: str) -> bool:
    """crash's ``files -R ref``: whether an open file is referred to by ``ref``: read as
    decimal, its descriptor; read as hexadecimal, one of the ``addresses`` shown for it
    (file, dentry, inode; or inode and address_space with ``-c``); or part of its path."""
    if ref.isdigit() and int(ref) == fd:
        return True
    try:
        value = int(ref, 16)
    except ValueError:
        value = None
    if value is not None and value in addresses:
        return True
    return ref in path
