"""A process's address space: its VMAs (``vm``), in address order.  Since 6.1 they
live in the mm's maple tree (``mm_mt``); before, on the ``mmap``/``vm_next`` list::

    for vma in for_each_vma(prog, task.mm):
        print(hex(int(vma.vm_start)), vma_name(prog, vma))
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.analysis.helpers.files import file_path
from kdumpy.analysis.helpers.lists import walk
from kdumpy.analysis.helpers.trees import maple_entries
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError

# The vm_operations of [vdso], [vvar]...: their vm_private_data is a vm_special_mapping.
_SPECIAL_OPS = ("special_mapping_vmops", "legacy_special_mapping_vmops")


def for_each_vma(prog: Program, mm: Object) -> Iterator[Object]:
    """Every ``struct vm_area_struct *`` of ``mm`` (``struct mm_struct *``)."""
    if mm.has_member_("mm_mt"):
        for _first, _last, entry in maple_entries(prog, int(mm.mm_mt.ma_root)):
            yield prog.pointer("struct vm_area_struct", entry)
        return
    off = prog.offsetof("struct vm_area_struct", "vm_next")
    for address in walk(int(mm.mmap), lambda a: prog.read_u64(a + off), 0, "mm VMA list"):
        yield prog.pointer("struct vm_area_struct", address)


def vma_name(prog: Program, vma: Object) -> str:
    """What crash's ``vm`` shows for a VMA: the file's path, ``[heap]``, ``[stack]``,
    a special mapping's name (``[vdso]``), or "" for anonymous memory."""
    if int(vma.vm_file):
        return file_path(prog, vma.vm_file)
    ops = int(vma.vm_ops)
    if ops and any(prog.has_symbol(n) and prog.symbol_address(n) == ops for n in _SPECIAL_OPS):
        try:
            return (
                prog.object_at("struct vm_special_mapping", int(vma.vm_private_data))
                .name.string_(64)
                .decode("utf-8", "backslashreplace")
            )
        except KdumpyError:
            return ""
    mm = vma.vm_mm
    start, end = int(vma.vm_start), int(vma.vm_end)
    if start <= int(mm.brk) and end >= int(mm.start_brk):
        return "[heap]"
    if start <= int(mm.start_stack) <= end:
        return "[stack]"
    return ""
