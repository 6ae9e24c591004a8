"""Mounts of a mount namespace (``mount``).  Since 6.8 a namespace keeps them in a
red-black tree by mount id (``mounts``); before, on the ``list`` of ``mnt_list``\\ s::

    for mnt in for_each_mount(prog):
        print(mount_devname(mnt), mount_fstype(mnt), mount_dir(prog, mnt))
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.files import d_path
from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.helpers.trees import rbtree_inorder
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program


def _text(obj: Object) -> str:
    return obj.string_(256).decode("utf-8", "backslashreplace")


def init_mnt_ns(prog: Program) -> Object:
    """The initial mount namespace (``init_task.nsproxy->mnt_ns``)."""
    return prog.object("init_task").nsproxy.mnt_ns


def for_each_mount(prog: Program, ns: Object | None = None) -> Iterator[Object]:
    """Every ``struct mount *`` of ``ns`` (the initial namespace by default)."""
    ns = ns if ns is not None else init_mnt_ns(prog)
    if prog.has_member("struct mount", "mnt_node"):
        off = prog.offsetof("struct mount", "mnt_node")
        for node in rbtree_inorder(prog, int(ns.mounts.rb_node)):
            yield prog.pointer("struct mount", node - off)
        return
    yield from list_for_each_entry("struct mount", ns.list.address_of_(), "mnt_list")


def mount_devname(mnt: Object) -> str:
    """The device name a ``struct mount`` was mounted from (``/dev/vda1``, ``tmpfs``)."""
    return _text(mnt.mnt_devname)


def mount_fstype(mnt: Object) -> str:
    """The filesystem type's name (``ext4``; ``fuse.sshfs`` style subtypes included)."""
    sb = mnt.mnt.mnt_sb
    name = _text(sb.s_type.name)
    subtype = sb.s_subtype if sb.has_member_("s_subtype") else None
    if subtype is not None and int(subtype):
        name += "." + _text(subtype)
    return name


def mount_dir(prog: Program, mnt: Object) -> str:
    """Where it is mounted, as a path from the namespace's root."""
    vfsmount = mnt.mnt.address_of_()
    return d_path(prog, vfsmount, vfsmount.mnt_root)


def dentry_path(prog: Program, dentry: Object) -> str:
    """The full path of a dentry given alone (``files -d``): seen through the first
    mount of its superblock in the initial namespace; within its own filesystem
    (``/`` being that filesystem's root) when no mount there holds it."""
    sb = int(dentry.d_sb) if dentry.has_member_("d_sb") else 0
    if sb:
        for mnt in for_each_mount(prog):
            if int(mnt.mnt.mnt_sb) == sb:
                return d_path(prog, mnt.mnt.address_of_(), dentry)
    return d_path(prog, prog.pointer("struct vfsmount", 0), dentry)
