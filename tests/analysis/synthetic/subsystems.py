"""The synthetic machine's memory subsystems, for crash's command set: SLUB caches
(slab pages through a vmemmap, hardened freelists, per-CPU slabs), a mount namespace,
a process's VMAs in a maple tree, IRQ descriptors in ``sparse_irqs``, vmalloc areas and
a swap file.  Every value written is recorded in :class:`Subsystems`, the oracle the
tests compare the commands with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kernel import SyntheticKernel
from .memory import PAGE, PAGE_OFFSET

VMEMMAP = 0xFFFFEA0000000000
PAGE_STRUCT = 64
FREELIST_RANDOM = 0x5EED_F00D_CAFE_1234
PG_SLAB = 9
# Maple node types (include/linux/maple_tree.h) and the root/internal-entry marks.
MAPLE_LEAF_64, MAPLE_ARANGE_64 = 1, 3
VM_READ, VM_WRITE, VM_EXEC = 0x1, 0x2, 0x4


@dataclass
class SlabCache:
    """A cache as ``kmem -s`` must report it, and where each object is."""

    name: str
    address: int
    object_size: int
    size: int
    allocated: int
    total: int
    slabs: int
    objects: dict[int, tuple[int, bool]] = field(default_factory=dict)  # obj -> (slab, used)


@dataclass
class Subsystems:
    caches: list[SlabCache] = field(default_factory=list)  # newest first (slab_caches order)
    mounts: list[tuple[int, int, str, str, str]] = field(default_factory=list)
    vmas: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # addr..name
    mm: tuple[int, int] = (0, 0)  # systemd's mm and pgd
    irqs: dict[int, tuple[int, list[tuple[int, str]]]] = field(default_factory=dict)
    nr_irqs: int = 0
    vmap_areas: list[tuple[int, int, int, int]] = field(default_factory=list)
    swaps: list[tuple[int, int, int, int, str]] = field(default_factory=list)


def _swab(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


class _Slabs:
    """SLUB caches with one node and a per-CPU slab on CPU 0."""

    def __init__(self, k: SyntheticKernel, out: Subsystems) -> None:
        self.k, self.out = k, out
        head = k.global_("slab_caches", "struct list_head")
        k.list_init(head)
        self.head = head
        k.global_("nr_node_ids", "unsigned int", {"": 1})
        # The struct pages of the heap's frames, mapped at VMEMMAP through page tables.
        heap_pages = (4 << 20) // PAGE
        k.mem._map_pages(VMEMMAP, heap_pages * PAGE_STRUCT)
        k.vmcoreinfo_extra["SYMBOL(vmemmap)"] = f"{VMEMMAP:x}"

    def page_of(self, address: int) -> int:
        return VMEMMAP + ((address - PAGE_OFFSET) // PAGE) * PAGE_STRUCT

    def cache(self, name: str, object_size: int, size: int, layout: list[str]) -> SlabCache:
        """A cache whose slabs are described by ``layout``: one string per slab, one
        letter per object: ``U`` used, ``F`` free on the slab's freelist, ``C`` free on
        CPU 0's freelist (that slab is CPU 0's).  The first slab letters decide where
        the slab sits: a slab with ``C`` is the CPU slab, one with ``F`` is partial."""
        k = self.k
        per_slab = len(layout[0])
        node = k.new("struct kmem_cache_node")
        k.list_init(node + k.offsetof("struct kmem_cache_node", "partial"))
        cpu = k.percpu_alloc(k.type("struct kmem_cache_cpu").size)
        cache = k.new("struct kmem_cache", {
            "size": size, "object_size": object_size, "offset": size // 2,
            "oo.x": per_slab, "name": k.string(name.encode()), "random": FREELIST_RANDOM,
            "node[0]": node, "cpu_slab": cpu,
        })  # fmt: skip
        k.list_add(self.head, cache + k.offsetof("struct kmem_cache", "list"))
        rec = SlabCache(name, cache, object_size, size, 0, per_slab * len(layout), len(layout))
        for letters in layout:
            self._slab(rec, node, cpu, letters)
        k.write(node, "struct kmem_cache_node",
                {"nr_slabs.counter": rec.slabs, "total_objects.counter": rec.total})  # fmt: skip
        rec.allocated = sum(used for _slab, used in rec.objects.values())
        self.out.caches.insert(0, rec)
        return rec

    def _slab(self, rec: SlabCache, node: int, cpu: int, letters: str) -> None:
        k = self.k
        memory = k.mem.alloc(PAGE, PAGE)
        slab = self.page_of(memory)
        objs = [memory + i * rec.size for i in range(len(letters))]
        for obj, letter in zip(objs, letters, strict=True):
            rec.objects[obj] = (slab, letter == "U")
        slab_free = self._chain(rec, [o for o, c in zip(objs, letters, strict=True) if c == "F"])
        cpu_free = self._chain(rec, [o for o, c in zip(objs, letters, strict=True) if c == "C"])
        inuse = len(letters) - letters.count("F")
        k.write(slab, "struct slab", {
            "__page_flags": 1 << PG_SLAB, "slab_cache": rec.address, "freelist": slab_free,
            "inuse": inuse, "objects": len(letters),
        })  # fmt: skip
        if "C" in letters:
            k.write(k.per_cpu_address(cpu, 0), "struct kmem_cache_cpu",
                    {"slab": slab, "freelist": cpu_free})  # fmt: skip
        elif "F" in letters:
            head = node + k.offsetof("struct kmem_cache_node", "partial")
            k.list_add_tail(head, slab + k.offsetof("struct slab", "slab_list"))

    def _chain(self, rec: SlabCache, objects: list[int]) -> int:
        """A hardened freelist through ``objects``: each next pointer stored as
        ``next ^ random ^ swab(where)``; returns the first object (0 if none)."""
        k = self.k
        if not objects:
            return 0
        offset = rec.size // 2
        for obj, nxt in zip(objects, [*objects[1:], 0], strict=True):
            where = obj + offset
            k.mem.u64(where, nxt ^ FREELIST_RANDOM ^ _swab(where))
        return objects[0]


def _maple_node(k: SyntheticKernel, kind: int, pivots: list[int], slots: list[int]) -> int:
    """A 256-byte aligned maple node; returns its encoded pointer (type in bits 3..6)."""
    node = k.mem.alloc(256, 256)
    struct = "mr64" if kind == MAPLE_LEAF_64 else "ma64"
    values: dict[str, object] = {f"{struct}.pivot[{i}]": p for i, p in enumerate(pivots)}
    values |= {f"{struct}.slot[{i}]": s for i, s in enumerate(slots)}
    values[f"{struct}.meta.end"] = len(slots) - 1  # the last used slot (ma_data_end)
    k.write(node, "struct maple_node", values)
    return node | kind << 3 | 0x4


def _maple_root(encoded: int) -> int:
    """A tree's ``ma_root``: the top node marked as an internal entry (xa_mk_node)."""
    return encoded | 0x2


def _vmas(k: SyntheticKernel, out: Subsystems, mm: int, files: dict[str, int]) -> None:
    """systemd's address space: text from a file, data, heap, stack and the vDSO, split
    over two maple leaves under an allocation-range node."""
    special = k.global_("special_mapping_vmops", "unsigned long")
    vdso = k.new("struct vm_special_mapping", {"name": k.string(b"[vdso]")})
    rx, rw = VM_READ | VM_EXEC, VM_READ | VM_WRITE
    specs = [
        (0x400000, 0x401000, rx, "/usr/lib/systemd/systemd", {}),
        (0x401000, 0x480000, rx, "/usr/lib/systemd/systemd", {}),
        (0x600000, 0x604000, rw, "", {}),
        (0x1C00000, 0x1C40000, rw, "[heap]", {}),
        (0x7FFC0000E000, 0x7FFC00030000, rw | 0x100, "[stack]", {}),
        (0x7FFC00040000, 0x7FFC00042000, rx, "[vdso]", {"vm_ops": special,
                                                        "vm_private_data": vdso}),
    ]  # fmt: skip
    vmas = []
    for start, end, flags, name, extra in specs:
        values = {"vm_start": start, "vm_end": end, "vm_flags": flags, "vm_mm": mm, **extra}
        if name.startswith("/"):
            values["vm_file"] = files[name]
        vma = k.new("struct vm_area_struct", values)
        vmas.append(vma)
        out.vmas.append((vma, start, end, flags, name))
    k.write(mm, "struct mm_struct", {"start_brk": 0x1C00000, "brk": 0x1C40000,
                                     "start_stack": 0x7FFC0002F000})  # fmt: skip

    # Each leaf: entries and the gaps between them (NULL slots), pivots = last index.
    def leaf(part: list[tuple[int, int, int]], low: int, high: int) -> int:
        pivots, slots, at = [], [], low
        for vma, start, end in part:
            if start > at:
                pivots.append(start - 1)
                slots.append(0)
            pivots.append(end - 1)
            slots.append(vma)
            at = end
        if at <= high:
            slots.append(0)  # the gap up to the node's end: its pivot is implied
        else:
            pivots.pop()
        return _maple_node(k, MAPLE_LEAF_64, pivots, slots)

    entries = [(v, s, e) for v, (_a, s, e, _f, _n) in zip(vmas, out.vmas, strict=True)]
    split = 0x1000000
    left = leaf(entries[:3], 0, split - 1)
    right = leaf(entries[3:], split, (1 << 64) - 1)
    root = _maple_node(k, MAPLE_ARANGE_64, [split - 1], [left, right])
    k.write(mm, "struct mm_struct", {"mm_mt.ma_root": _maple_root(root)})


def _irqs(k: SyntheticKernel, out: Subsystems) -> None:
    """16 IRQ numbers: 0 (timer), 1 (i8042), 4 (two handlers sharing the line) and 9
    allocated without a handler; ``sparse_irqs`` is a single maple leaf."""
    out.nr_irqs = 16
    k.global_("nr_irqs", "int", {"": out.nr_irqs})
    handlers = {0: [b"timer"], 1: [b"i8042"], 4: [b"ttyS0", b"serial-extra"], 9: []}
    pivots, slots = [], []
    for irq, names in handlers.items():
        actions, nxt = [], 0
        for name in reversed(names):
            nxt = k.new("struct irqaction", {"name": k.string(name), "next": nxt, "irq": irq})
            actions.insert(0, (nxt, name.decode()))
        desc = k.new("struct irq_desc", {"irq": irq, "action": nxt})
        out.irqs[irq] = (desc, actions)
        if irq and (not pivots or pivots[-1] != irq - 1):
            pivots.append(irq - 1)
            slots.append(0)
        pivots.append(irq)
        slots.append(desc)
    leaf = _maple_node(k, MAPLE_LEAF_64, pivots, [*slots, 0])
    k.global_("sparse_irqs", "struct maple_tree", {"ma_root": _maple_root(leaf)})


def _vmalloc(k: SyntheticKernel, out: Subsystems, stacks: list[int]) -> None:
    """``vmap_area_list``: one area per task stack (16 KiB + the guard page)."""
    head = k.global_("vmap_area_list", "struct list_head")
    k.list_init(head)
    for stack in sorted(stacks):
        vm = k.new("struct vm_struct", {"addr": stack, "size": 16384 + PAGE})
        va = k.new("struct vmap_area", {"va_start": stack, "va_end": stack + 16384, "vm": vm})
        k.list_add_tail(head, va + k.offsetof("struct vmap_area", "list"))
        out.vmap_areas.append((va, vm, stack, stack + 16384))


def _swap(k: SyntheticKernel, out: Subsystems, swap_file: int, path: str) -> None:
    """One active swap file of 256 MiB, 10 MiB used, priority -2."""
    si = k.new("struct swap_info_struct", {"flags": 0x1, "prio": -2,
                                           "swap_file": swap_file, "pages": 65536,
                                           "inuse_pages": 2560})  # fmt: skip
    k.global_("swap_info", "struct swap_info_struct *[2]", {"[0]": si})
    k.global_("nr_swapfiles", "unsigned int", {"": 1})
    out.swaps.append((si, 65536, 2560, -2, path))


def add_subsystems(k: SyntheticKernel, out: Subsystems, mm: int, files: dict[str, int],
                   stacks: list[int]) -> None:  # fmt: skip
    """Slab caches, systemd's VMAs (``mm``), IRQs, vmalloc areas and swap; ``files``
    maps the paths of files the builder created to their ``struct file``."""
    slabs = _Slabs(k, out)
    slabs.cache("kmalloc-64", 64, 64, ["UUFUFUUU" * 8, "U" * 64, "UCUCCUUU" * 8])
    slabs.cache("task_struct", 3000, 3072, ["U", "F"])
    out.mm = (mm, 0)
    _vmas(k, out, mm, files)
    _irqs(k, out)
    _vmalloc(k, out, stacks)
    _swap(k, out, files["/swapfile"], "/swapfile")
