"""btop, ptob, ptov, vtop: between page numbers, physical and virtual addresses."""

from __future__ import annotations

import argparse

from kdumpy.analysis.commands import parse_number, resolve_address
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.helpers.memmap import page_shift, phys_to_virt, translate

_PRELUDE = "# prog = kdumpy.open(DUMP)\nfrom kdumpy.analysis.helpers import memmap\n"


def address_code(word: str) -> str:
    """An address word as Python: a hex number, or the symbol's lookup."""
    try:
        return hex(parse_number(word))
    except CommandError:
        return f"prog.symbol_address({word!r})"


def _numbers(opts: argparse.Namespace) -> list[int]:
    return [parse_number(a) for a in opts.values]


def page_number(text: str) -> int:
    """A page frame number as crash reads it: decimal, unless it says hex (``0x``, or
    a digit a-f)."""
    if text.isdigit():
        return int(text)
    return parse_number(text)


@command("btop", "bytes to page", Arg("values", nargs="+", metavar="address"),
         usage="btop address ...",
         python=lambda o: _PRELUDE + "\n".join(
             f"print(hex({parse_number(a):#x} >> memmap.page_shift(prog)))" for a in o.values
         ))  # fmt: skip
def cmd_btop(session: Session, opts: argparse.Namespace) -> str:
    shift = page_shift(session.prog)
    return "".join(f"{v:x}: {v >> shift:x}\n" for v in _numbers(opts))


@command("ptob", "page to bytes", Arg("values", nargs="+", metavar="page_number"),
         usage="ptob page_number ...",
         python=lambda o: _PRELUDE + "\n".join(
             f"print(hex({page_number(a):#x} << memmap.page_shift(prog)))" for a in o.values
         ))  # fmt: skip
def cmd_ptob(session: Session, opts: argparse.Namespace) -> str:
    shift = page_shift(session.prog)
    return "".join(f"{v:x}: {v << shift:x}\n" for v in map(page_number, opts.values))


@command("ptov", "physical to virtual", Arg("values", nargs="+", metavar="address"),
         usage="ptov address ...",
         python=lambda o: _PRELUDE + "\n".join(
             f"print(hex(memmap.phys_to_virt(prog, {parse_number(a):#x})))" for a in o.values
         ))  # fmt: skip
def cmd_ptov(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    rows = (f"{phys_to_virt(prog, v):<16x}  {v:x}\n" for v in _numbers(opts))
    return "VIRTUAL           PHYSICAL\n" + "".join(rows)


@command("vtop", "virtual to physical", Arg("values", nargs="+", metavar="address|symbol"),
         usage="vtop address|symbol ...",
         python=lambda o: _PRELUDE + "".join(
             f"print(memmap.translate(prog, {address_code(a)}))\n" for a in o.values
         ))  # fmt: skip
def cmd_vtop(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    out = ["VIRTUAL           PHYSICAL\n"]
    for word in opts.values:
        address = resolve_address(session, word)
        phys = translate(prog, address)
        out.append(f"{address:<16x}  {'(not accessible)' if phys is None else f'{phys:x}'}\n")
    return "".join(out)


# x86_64 page table entry bits, crash's names (arch/x86/include/asm/pgtable_types.h).
PTE_FLAGS = ((0x1, "PRESENT"), (0x2, "RW"), (0x4, "USER"), (0x8, "PWT"), (0x10, "PCD"),
             (0x20, "ACCESSED"), (0x40, "DIRTY"), (0x80, "PSE"), (0x100, "GLOBAL"),
             (1 << 63, "NX"))  # fmt: skip
PTE_PFN_MASK = 0x000FFFFFFFFFF000


def pte_flags(pte: int) -> str:
    """``(PRESENT|RW|...)`` of a page table entry's bits."""
    return "(" + "|".join(name for bit, name in PTE_FLAGS if pte & bit) + ")"


@command("pte", "translate a page table entry", Arg("values", nargs="+", metavar="pte"),
         usage="pte value ...",
         python=lambda o: _PRELUDE + "".join(
             f"print(hex({parse_number(a):#x} & 0x000FFFFFFFFFF000))\n" for a in o.values
         ))  # fmt: skip
def cmd_pte(session: Session, opts: argparse.Namespace) -> str:
    out = []
    for pte in _numbers(opts):
        width = max(8, len(f"{pte:x}"))
        out.append(f"{'PTE':^{width}}  PHYSICAL  FLAGS\n")
        out.append(f"{pte:<{width}x}  {pte & PTE_PFN_MASK:<8x}  {pte_flags(pte)}\n")
    return "".join(out)
