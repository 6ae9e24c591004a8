"""search: memory for a value (or a string)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from kdumpy.analysis.commands import parse_count, parse_number, resolve_address
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.memcmds import hexdump
from kdumpy.analysis.commands.tasksel import all_tasks, task_line
from kdumpy.analysis.helpers.memmap import page_offset, phys_to_virt
from kdumpy.analysis.helpers.search import (
    match_context,
    search_physical,
    search_string_virtual,
    search_virtual,
)
from kdumpy.analysis.helpers.tasks import active_tasks
from kdumpy.analysis.program import Program
from kdumpy.printable import shown

MAX_CONTEXT = 4096  # values either side of a match (-x): 32 KiB of 64-bit words


def _python(opts: argparse.Namespace) -> str:
    value = opts.values[0] if opts.values else "0"
    width = opts.width or 8
    context = (
        f"    before, after = match_context(prog, address, {width}, {opts.context}, True)\n"
        "    print(before.hex(), after.hex())\n"
        if opts.context
        else ""
    )
    return (
        "# prog = kdumpy.open(DUMP)\n"
        "from kdumpy.analysis.helpers.search import match_context, search_physical\n"
        "from kdumpy.analysis.helpers.memmap import phys_to_virt\n"
        f"for address, word in search_physical(prog, 0x{value.removeprefix('0x')}, "
        f"width={width}):\n"
        "    print(hex(phys_to_virt(prog, address)), hex(word))\n" + context
    )


@command("search", "search memory",
         Arg("-s", dest="start", metavar="start", help="first address (symbol or hex)"),
         Arg("-e", dest="end", metavar="end", help="end address"),
         Arg("-l", dest="length", metavar="length", help="bytes to search"),
         Arg("-p", dest="physical", action="store_true", help="physical memory"),
         Arg("-k", dest="kernel", action="store_true", help="kernel memory (the default)"),
         Arg("-c", dest="string", action="store_true", help="the values are strings"),
         Arg("-w", dest="width", action="store_const", const=4, help="32-bit values"),
         Arg("-h", dest="width", action="store_const", const=2, help="16-bit values"),
         Arg("-m", dest="mask", metavar="mask", help="bits to ignore"),
         Arg("-t", dest="stacks", action="store_const", const="all",
             help="the kernel stack of every task"),
         Arg("-T", dest="stacks", action="store_const", const="active",
             help="the kernel stack of each CPU's active task"),
         Arg("-x", dest="context", type=parse_count, metavar="count",
             help="also show this many values before and after each match"),
         Arg("values", nargs="+", metavar="value"),
         usage="search [-s start] [-e end | -l length] [-p] [-t | -T] [-c | -w | -h] "
               "[-m mask] [-x count] value ...",
         python=_python)  # fmt: skip
def cmd_search(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.context is not None and opts.string:
        raise CommandError("-x does not go with -c")
    if opts.context is not None and opts.context > MAX_CONTEXT:
        raise CommandError(f"-x: at most {MAX_CONTEXT} values around a match")
    if opts.stacks:
        if opts.start or opts.end or opts.length or opts.physical or opts.string:
            raise CommandError("-t and -T search the stacks: no -s, -e, -l, -p or -c")
        return _search_stacks(prog, opts)
    start = _where(session, opts.start, opts.physical)
    if opts.end and opts.length:
        raise CommandError("give -e or -l, not both")
    end = None
    if opts.end:
        end = _where(session, opts.end, opts.physical)
    elif opts.length:
        end = (start or 0) + parse_number(opts.length)
    out = []
    for text in opts.values:
        if opts.string:
            if start is None or end is None or opts.physical:
                raise CommandError("a string search needs a virtual -s and -e or -l")
            for address in search_string_virtual(prog, text.encode(), start, end):
                out.append(f"{address:x}: {shown(text)}\n")
            continue
        width = opts.width or 8
        mask = parse_number(opts.mask) if opts.mask else 0
        value = parse_number(text)
        for address, word in _search(prog, value, start, end, width, mask, opts.physical):
            out.append(_match(prog, address, word, width, opts.context, opts.physical))
    return ("\n" if opts.context else "").join(out)


def _match(prog: Program, address: int, word: int, width: int, context: int | None,
           physical: bool = False) -> str:  # fmt: skip
    """A match's line; with ``-x``, between the values before and after it (rd's
    layout), the match's own line with two spaces after the colon, as crash."""
    if not context:
        return f"{address:x}: {word:x}\n"
    before, after = match_context(prog, address, width, context, physical)
    return (hexdump(address - len(before), before, width) + f"{address:x}:  {word:x}\n"
            + hexdump(address + width, after, width))  # fmt: skip


def _search_stacks(prog: Program, opts: argparse.Namespace) -> str:
    """``-t``/``-T``: each task's stack (every task's, or each CPU's active one) with
    its matches, headed by the task; tasks without a match are left out."""
    if opts.stacks == "all":
        tasks = all_tasks(prog)
    else:
        active = active_tasks(prog)
        tasks = [active[cpu] for cpu in sorted(active)]
    size = prog.arch.stack_size(prog.dump.page_size)
    width = opts.width or 8
    mask = parse_number(opts.mask) if opts.mask else 0
    blocks = []
    for task in tasks:
        stack = int(task.stack)
        if not stack:
            continue
        hits = [_match(prog, address, word, width, opts.context) for text in opts.values
                for address, word in search_virtual(prog, parse_number(text), stack,
                                                    stack + size, width, mask)]  # fmt: skip
        if hits:
            blocks.append(task_line(task) + ("\n" if opts.context else "").join(hits))
    return "\n".join(blocks)


def _where(session: Session, text: str | None, physical: bool) -> int | None:
    if text is None:
        return None
    return parse_number(text) if physical else resolve_address(session, text)


def _search(prog: Program, value: int, start: int | None, end: int | None, width: int,
            mask: int, physical: bool) -> Iterator[tuple[int, int]]:  # fmt: skip
    """Matches as ``(address, word)``: physical addresses with -p; else virtual, the
    direct map searched through physical memory in bulk."""
    if physical:
        yield from search_physical(prog, value, start or 0, end, width, mask)
        return
    base = page_offset(prog)
    # The physical address the direct map begins with (x86_64: 0; arm64: the start of RAM)
    # and the end of the memory the dump holds: the direct map's reach.
    first = (base - phys_to_virt(prog, 0)) % (1 << 64)
    ram_end = max((hi for _, hi in prog.dump.pfn_ranges()), default=0) * prog.dump.page_size
    lo = start if start is not None else base
    if base <= lo and lo - base + first < ram_end:
        hi = ram_end if end is None else end - base + first
        for phys, word in search_physical(prog, value, lo - base + first, hi, width, mask):
            yield phys_to_virt(prog, phys), word
        return
    if end is None:
        raise CommandError("outside the direct map, give -e or -l")
    yield from search_virtual(prog, value, lo, end, width, mask)
