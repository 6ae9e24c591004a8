"""Disks and their requests in flight (``dev -d``): every ``struct gendisk`` of the block
class, and the blk-mq requests its queue holds, counted as reads and writes::

    for disk in for_each_disk(prog):
        reads, writes = disk_requests(prog, disk)

A disk is found through its whole-disk device in the block class: the device is
``block_device.bd_device`` since 5.11 (partition 0 is the disk), ``hd_struct.__dev``
before.  A request in flight holds a tag: a scheduler tag (``sched_tags``, from
submission) when the queue has an I/O scheduler, else a driver tag (``tags``); the tags
taken are the set bits of the tag set's sbitmaps, each naming its request.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.lists import list_for_each_entry
from kdumpy.analysis.helpers.xarray import xa_for_each
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.types import PointerType
from kdumpy.errors import KdumpyError

_MAX_TAGS = 1 << 16  # tags a queue may have: beyond any real one
_MAX_HW_QUEUES = 4096
REQ_OP_MASK = 0xFF  # the request's operation in cmd_flags (REQ_OP_BITS = 8)


def _subsys(prog: Program, cls: Object) -> Object:
    """A class's ``struct subsys_private``: ``class->p`` before 6.4, since then found
    on ``class_kset``'s list by its ``class`` back-pointer."""
    if cls.has_member_("p"):
        return cls.p
    address = int(cls.address_ or 0)
    head = prog.object("class_kset", "struct kset *").list.address_of_()
    for sp in list_for_each_entry("struct subsys_private", head, "subsys.kobj.entry"):
        if int(sp.member_("class")) == address:
            return sp
    raise KdumpyError("block_class is not registered (no subsys_private)")


def class_devices(prog: Program, name: str) -> Iterator[Object]:
    """The ``struct device *`` of every device of the class ``name`` (``block_class``)."""
    sp = _subsys(prog, prog.object(name, "struct class"))
    head = sp.klist_devices.k_list.address_of_()
    for priv in list_for_each_entry("struct device_private", head, "knode_class.n_node"):
        yield priv.device


def _partno(bdev: Object) -> int:
    """A block device's partition number (in ``__bd_flags``' low byte since 6.10)."""
    if bdev.has_member_("__bd_flags"):
        return int(bdev.member_("__bd_flags.counter")) & 0xFF
    return int(bdev.bd_partno)


def for_each_disk(prog: Program) -> Iterator[Object]:
    """Every ``struct gendisk *``, in the block class's order (crash's and drgn's)."""
    new = prog.has_member("struct block_device", "bd_device")
    for device in class_devices(prog, "block_class"):
        if new:
            bdev = device.container_of_("struct block_device", "bd_device")
            if _partno(bdev) == 0:
                yield bdev.bd_disk
        else:
            part = device.container_of_("struct hd_struct", "__dev")
            if int(part.partno) == 0:
                yield part.container_of_("struct gendisk", "part0")


def disk_name(disk: Object) -> str:
    return disk.disk_name.string_(32).decode("utf-8", "backslashreplace")


def _hw_contexts(prog: Program, q: Object) -> list[Object]:
    """A queue's ``struct blk_mq_hw_ctx *``: an array before 5.18 and since 6.19, an
    XArray (``hctx_table``) between."""
    count = int(q.nr_hw_queues)
    if not 0 <= count <= _MAX_HW_QUEUES:
        raise KdumpyError(f"request queue {int(q):#x}: implausible nr_hw_queues {count}")
    if q.has_member_("hctx_table"):
        t = prog.type("struct blk_mq_hw_ctx *")
        return [entry.cast_(t) for _i, entry in xa_for_each(q.hctx_table)][:count]
    return [q.queue_hw_ctx[i] for i in range(count)]


def _set_bits(prog: Program, sb: Object) -> Iterator[int]:
    """The set bits of a ``struct sbitmap`` (a word's ``cleared`` bits are free)."""
    depth, shift, words = int(sb.depth), int(sb.shift), int(sb.map_nr)
    if depth > _MAX_TAGS or shift > 6 or words > _MAX_TAGS:
        raise KdumpyError(f"sbitmap at {int(sb.address_ or 0):#x} is implausible")
    for i in range(words):
        word = sb.map[i]
        bits = int(word.word) & ~int(word.cleared)
        for bit in range(1 << shift):
            n = (i << shift) + bit
            if n < depth and bits >> bit & 1:
                yield n


def _sbitmap_queue(tags: Object, member: str) -> Object:
    """``tags->bitmap_tags``: embedded since 5.16, a pointer before."""
    queue = tags.member_(member)
    return queue.deref_() if isinstance(queue.type_.strip(), PointerType) else queue


def _tagged(prog: Program, tags: Object, sched: bool) -> Iterator[tuple[int, Object]]:
    """``(tag, struct request *)`` of every tag taken in a ``struct blk_mq_tags``."""
    rqs = tags.static_rqs if sched else tags.rqs
    reserved = int(tags.nr_reserved_tags)
    if reserved:
        for bit in _set_bits(prog, _sbitmap_queue(tags, "breserved_tags").sb):
            yield bit, rqs[bit]
    for bit in _set_bits(prog, _sbitmap_queue(tags, "bitmap_tags").sb):
        yield bit + reserved, rqs[bit + reserved]


def queue_requests(prog: Program, q: Object) -> list[Object]:
    """The requests in flight on a blk-mq queue, each once: those holding a scheduler
    tag when the queue has an I/O scheduler (from submission on), else a driver tag;
    a tag's request must name this queue and the tag (hardware contexts may share
    tags).  A bio-based queue (no tag set) has none."""
    if not int(q.tag_set):
        return []
    sched = bool(int(q.elevator))
    found: dict[int, Object] = {}
    for hctx in _hw_contexts(prog, q):
        tags = hctx.sched_tags if sched else hctx.tags
        if not int(tags):
            continue
        for tag, rq in _tagged(prog, tags, sched):
            if not int(rq) or int(rq.q) != int(q):
                continue
            if int(rq.internal_tag if sched else rq.tag) == tag:
                found.setdefault(int(rq), rq)
    return list(found.values())


def disk_requests(prog: Program, disk: Object) -> tuple[int, int]:
    """``(reads, writes)`` in flight on a disk's queue (a write's operation is odd)."""
    requests = queue_requests(prog, disk.queue)
    writes = sum(int(rq.cmd_flags) & REQ_OP_MASK & 1 for rq in requests)
    return len(requests) - writes, writes
