"""Open files of a task and path names of dentries (``d_path`` across mounts)."""

from __future__ import annotations

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
    """The path of ``dentry`` seen through mount ``mnt`` (``struct vfsmount *``)."""
    mount_off = prog.offsetof("struct mount", "mnt")
    parts: list[str] = []
    mnt_addr, dentry_addr = int(mnt), int(dentry)
    for _ in range(_MAX_DEPTH):
        if not mnt_addr or not dentry_addr:
            break
        vfsmount = prog.object_at("struct vfsmount", mnt_addr)
        if dentry_addr == int(vfsmount.mnt_root):
            mount = prog.object_at("struct mount", mnt_addr - mount_off)
            parent = int(mount.mnt_parent)
            if parent == mnt_addr - mount_off or not parent:
                break
            dentry_addr = int(mount.mnt_mountpoint)
            mnt_addr = parent + mount_off
            continue
        d = prog.object_at("struct dentry", dentry_addr)
        parent_addr = int(d.d_parent)
        parts.append(dentry_name(d))
        if parent_addr == dentry_addr:
            break
        dentry_addr = parent_addr
    return "/" + "/".join(reversed(parts))


def _file_type(inode: Object) -> str:
    return _TYPES.get(int(inode.i_mode) & 0o170000, "UNKN")


def file_path(prog: Program, file: Object) -> str:
    """The path of an open file (``socket:[ino]`` / ``pipe:[ino]`` for those)."""
    path = file.f_path
    inode = file.f_inode
    kind = _file_type(inode) if int(inode) else "UNKN"
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
            out.append((fd, address, int(file.f_path.dentry), int(inode), _file_type(inode),
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
