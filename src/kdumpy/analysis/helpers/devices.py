"""Character and block device majors (``dev``): the ``chrdevs`` regions with their
``struct cdev`` and file operations, and the ``major_names`` of block drivers; the I/O
port and memory resource trees (``dev -i``) and the PCI buses and devices (``dev -p``)."""

from __future__ import annotations

from typing import NamedTuple

from kdumpy.analysis.helpers.lists import list_for_each_entry, partial, walk
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program

MAJOR_HASH = 255  # CHRDEV_MAJOR_HASH_SIZE, BLKDEV_MAJOR_HASH_SIZE


class CharDev(NamedTuple):
    major: int
    minor: int
    name: str
    cdev: int
    ops: int  # the cdev's file_operations, 0 without a cdev


def _name(prog: Program, address: int, struct: str) -> str:
    return prog.object_at(struct, address).name.string_().decode("utf-8", "backslashreplace")


def char_devices(prog: Program) -> list[CharDev]:
    """Every registered character device region, by major and first minor."""
    table = prog.object("chrdevs")
    off = prog.offsetof("struct char_device_struct", "next")
    out = []
    for i in range(MAJOR_HASH):
        first = int(table[i])
        for cd in walk(first, lambda a: prog.read_u64(a + off), 0, "chrdevs chain"):
            c = prog.object_at("struct char_device_struct", cd)
            cdev = int(c.cdev) or _mapped_cdev(prog, int(c.major), int(c.baseminor))
            ops = int(prog.object_at("struct cdev", cdev).ops) if cdev else 0
            name = _name(prog, cd, "struct char_device_struct")
            out.append(CharDev(int(c.major), int(c.baseminor), name, cdev, ops))
    return sorted(out, key=lambda d: (d.major, d.minor))


MINORBITS = 20


def _mapped_cdev(prog: Program, major: int, minor: int) -> int:
    """The ``struct cdev`` that ``cdev_add`` put in ``cdev_map`` for a device number
    (drivers like tty register a region and add their cdev separately)."""
    probes = prog.object("cdev_map").probes
    off = prog.offsetof("struct probe", "next")
    dev = major << MINORBITS | minor
    for p in walk(int(probes[major % MAJOR_HASH]), lambda a: prog.read_u64(a + off), 0, "cdev_map"):
        probe = prog.object_at("struct probe", p)
        start, count = int(probe.dev), int(probe.range)
        if start >> MINORBITS == major and start <= dev < start + count and int(probe.data):
            return int(probe.data)
    return 0


def block_majors(prog: Program) -> list[tuple[int, str]]:
    """``(major, name)`` of every registered block driver, in the table's order."""
    table = prog.object("major_names")
    off = prog.offsetof("struct blk_major_name", "next")
    out = []
    for i in range(MAJOR_HASH):
        for bm in walk(int(table[i]), lambda a: prog.read_u64(a + off), 0, "major_names chain"):
            major = int(prog.object_at("struct blk_major_name", bm).major)
            out.append((major, _name(prog, bm, "struct blk_major_name")))
    return out


class Resource(NamedTuple):
    """A ``struct resource``: an I/O port or memory range and who claimed it."""

    address: int
    start: int
    end: int
    name: str


_MAX_RESOURCES = 1 << 16


def resource_tree(prog: Program, root: str) -> list[Resource]:
    """The resources under ``ioport_resource`` or ``iomem_resource``, the root first,
    depth first (each range before the ranges inside it, as /proc/iomem)."""
    out: list[Resource] = []
    seen: set[int] = set()
    node = prog.symbol_address(root)
    stack: list[int] = []
    while node or stack:
        if not node:
            node = stack.pop()
            continue
        if node in seen or len(seen) >= _MAX_RESOURCES:
            partial(f"{root} tree", f"loops back to {node:#x}", len(seen))
            break
        seen.add(node)
        r = prog.object_at("struct resource", node)
        name = r.name
        text = name.string_(256).decode("utf-8", "backslashreplace") if int(name) else ""
        out.append(Resource(node, int(r.start), int(r.end), text))
        stack.append(int(r.sibling))
        node = int(r.child)
    return out


# PCI Express device/port types (PCI_EXP_TYPE_*, include/uapi/linux/pci_regs.h).
PCIE_TYPES = {0: "ENDPOINT", 1: "LEG_END", 4: "ROOT_PORT", 5: "UPSTREAM", 6: "DOWNSTREAM",
              7: "PCI_BRIDGE", 8: "PCIE_BRIDGE", 9: "RC_END", 10: "RC_EC"}  # fmt: skip
_PCI_HEADER_BRIDGES = (1, 2)  # PCI_HEADER_TYPE_BRIDGE, PCI_HEADER_TYPE_CARDBUS


def device_name(dev: Object) -> str:
    """A ``struct device``'s name (its kobject's: ``0000:00:01.1``)."""
    name = dev.kobj.name
    return name.string_(256).decode("utf-8", "backslashreplace") if int(name) else ""


def pci_root_buses(prog: Program) -> list[Object]:
    """The ``struct pci_bus *`` of every PCI root bus (``pci_root_buses``)."""
    return list(list_for_each_entry("struct pci_bus", prog.object("pci_root_buses").address_of_(),
                                    "node"))  # fmt: skip


def pci_child_buses(bus: Object) -> list[Object]:
    """The buses behind a bus's bridges."""
    return list(list_for_each_entry("struct pci_bus", bus.children.address_of_(), "node"))


def pci_bus_devices(bus: Object) -> list[Object]:
    """A bus's devices: its own bridge (``self``) first where it has one, then the
    devices on it, as crash lists them."""
    own = [bus.self] if int(bus.self) else []
    return own + list(list_for_each_entry("struct pci_dev", bus.devices.address_of_(),
                                          "bus_list"))  # fmt: skip


def pci_dev_type(dev: Object) -> str:
    """crash's TYPE: the PCI Express port type (``ENDPOINT`` for plain PCI, whose
    flags are zero), `` [BRIDGE]`` after it for a bridge's header type."""
    kind = (int(dev.pcie_flags_reg) & 0xF0) >> 4
    bridge = int(dev.hdr_type) & 0x7F in _PCI_HEADER_BRIDGES
    return PCIE_TYPES.get(kind, f"{kind:x}") + (" [BRIDGE]" if bridge else "")
