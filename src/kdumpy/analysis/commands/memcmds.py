"""rd, dis, sym, and the memory summary of ``kmem -i`` (the command is in ``kmem``)."""

from __future__ import annotations

import argparse
import os
import struct
from collections.abc import Callable
from functools import partial

from kdumpy.analysis.commands import parse_count, parse_number, resolve_address
from kdumpy.analysis.commands.apicode import address_expr, api_code
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.helpers.memmap import is_user_address
from kdumpy.analysis.helpers.mm import (
    commit_limit,
    committed_pages,
    global_node_page_state,
    global_zone_page_state,
    hugetlb_pages,
    nr_blockdev_pages,
    swap_pages,
    totalram_pages,
)
from kdumpy.analysis.helpers.slab import slab_cache_name, slab_cache_of
from kdumpy.analysis.helpers.symbolize import symbolize
from kdumpy.analysis.helpers.tasks import panic_task
from kdumpy.analysis.helpers.usermem import read_user
from kdumpy.analysis.lines import LinesUnavailable, line_table
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program
from kdumpy.analysis.symbols import Symbol
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown

_WIDTH_FLAGS = [
    Arg(f"-{8 * w}", dest="width", action="store_const", const=w, help=f"{8 * w}-bit values")
    for w in (1, 2, 4, 8)
]


def rd_python(opts: argparse.Namespace) -> str:
    width = 1 if opts.raw else 8 if opts.symbolic or opts.slab else opts.width or 8
    address = f"{parse_number(opts.address):#x}" if opts.physical else address_expr(opts.address)
    names: list[str] = []
    modules = ["struct"]
    if opts.user:  # the current task's memory: the panic task unless `set` chose another
        names.append("panic_task")
        head = "from kdumpy.analysis.helpers.usermem import read_user\n\nmm = panic_task(prog).mm\n"
        read = "read_user(prog, mm, address, size)"
    else:
        head = ""
        read = f"{'prog.memory.phys' if opts.physical else 'prog.read'}(address, size)"
    if opts.ascii and not opts.user:
        limit = max(opts.count or 1, 256)
        return api_code([], f"print(prog.memory.cstring({address}, {limit}))\n")
    count = opts.count or 1
    if opts.raw:  # crash's -r: count bytes to a new file, never through a symbolic link
        flags = "os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW"
        return api_code(
            names,
            f"""{head}address, size = {address}, {count}
fd = os.open({opts.raw!r}, {flags}, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write({read})
""",
            ["os"],
        )
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    value = f'f"{{value:0{2 * width}x}}"'
    if opts.symbolic or opts.slab:
        names.append("symbolize")
        value = "symbolize(prog, value)"
    if opts.slab:  # a value in a slab page: its cache's name in brackets
        head = "from kdumpy.analysis.helpers.slab import slab_cache_of, slab_cache_name\n" + head
        label = '"[{value:x}:{name}]"' if opts.slab > 1 else '"[{name}]"'
        value = f"""(
        symbolize(prog, value)
        if symbolize(prog, value) != f"{{value:016x}}" or slab_cache_of(prog, value) is None
        else {label}.format(value=value, name=slab_cache_name(slab_cache_of(prog, value))))"""
    return api_code(
        names,
        f"""{head}address, size = {address}, {width * count}
data = {read}
for i, (value,) in enumerate(struct.iter_unpack("<{fmt}", data)):
    print(f"{{address + {width} * i:x}}:", {value})
""",
        modules,
    )


@command("rd", "read memory", *_WIDTH_FLAGS,
         Arg("-p", dest="physical", action="store_true", help="a physical address"),
         Arg("-u", dest="user", action="store_true",
             help="a user virtual address of the current task (set); an address below the "
                  "kernel's half that the kernel does not map is read so anyway"),
         Arg("-a", dest="ascii", action="store_true", help="an ASCII string"),
         Arg("-s", dest="symbolic", action="store_true",
             help="64-bit values, symbolically where they point at a symbol"),
         Arg("-S", dest="slab", action="count", default=0,
             help="as -s, and a value in a slab page as [its cache's name]; -SS as "
                  "[value:cache]"),
         Arg("-d", dest="decimal", action="store_const", const="d",
             help="signed decimal values (no ASCII column)"),
         Arg("-D", dest="decimal", action="store_const", const="u",
             help="unsigned decimal values (no ASCII column)"),
         Arg("-x", dest="no_ascii", action="store_true", help="no ASCII column"),
         Arg("-N", dest="network", action="store_true", help="values in network byte order"),
         Arg("-R", dest="reverse", action="store_true",
             help="the count values up to and including the address"),
         Arg("-o", dest="offset", type=parse_number, default=0, metavar="offset",
             help="added to the address"),
         Arg("-e", dest="end", type=parse_number, metavar="address",
             help="read up to this address (instead of a count)"),
         Arg("-r", dest="raw", metavar="file",
             help="copy the count bytes (or up to -e) raw to a new file (created 0600; "
                  "an existing file or a symbolic link is refused)"),
         Arg("address", metavar="address|symbol"),
         Arg("count", nargs="?", type=parse_count, default=None, help="values to read (1)"),
         usage="rd [-8|-16|-32|-64] [-p|-u] [-a] [-s|-S|-SS] [-d|-D] [-x] [-N] [-R] "
               "[-o offset] [-e end] [-r file] address|symbol [count]",
         python=rd_python)  # fmt: skip
def cmd_rd(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.physical and opts.user:
        raise CommandError("-p and -u name different address spaces: give one")
    if opts.raw and (opts.width or opts.ascii or opts.symbolic or opts.slab or opts.decimal):
        raise CommandError("-r copies bytes: it takes no -8/-16/-32/-64, -a, -s, -S, -d or -D")
    width = 1 if opts.raw else opts.width or 8
    address = (
        parse_number(opts.address) if opts.physical else resolve_address(session, opts.address)
    ) + opts.offset
    if opts.end is not None and (opts.count is not None or opts.reverse):
        raise CommandError("-e takes the place of a count and of -R")
    if opts.raw and opts.count is None and opts.end is None:
        raise CommandError("-r needs a count or -e: how many bytes to copy")
    count = 1 if opts.count is None else opts.count
    if opts.end is not None:
        if opts.end <= address:
            raise CommandError(f"-e {opts.end:x} is not above {address:x}")
        count = (opts.end - address) // width
    elif opts.reverse:
        address -= width * (count - 1)
    read = _reader(session, address, opts)
    if opts.raw:
        return _raw_copy(read, address, count, opts.raw)
    if opts.ascii:
        data = prog.memory.cstring(address, max(count, 256)) if read is prog.read else (
            _cstring(read, address, max(count, 256), prog.dump.page_size))  # fmt: skip
        return f"{address:x}:  {shown(data)}\n"
    if opts.symbolic or opts.slab:
        width = 8
    size = width * count
    data = read(address, size)
    if opts.symbolic or opts.slab:
        return symbolic_dump(prog, address, data, opts.slab)
    return hexdump(address, data, width, opts.decimal or "x", not opts.no_ascii,
                   ">" if opts.network else "<")  # fmt: skip


Reader = Callable[[int, int], bytes]


def _reader(session: Session, address: int, opts: argparse.Namespace) -> Reader:
    """How ``rd`` reads: physical memory (-p), the current task's user memory (-u, or an
    address in the user half that the kernel does not map, as crash and drgn read it),
    else kernel virtual memory."""
    prog = session.prog
    if opts.physical:
        return prog.memory.phys
    if not opts.user and (not is_user_address(address) or prog.memory.is_valid(address)):
        return prog.read
    task = current_task(session)
    mm = task.mm if task is not None else None
    if mm is None or not int(mm):
        if not opts.user:
            return prog.read  # the kernel's own error names the address
        pid = int(task.pid) if task is not None else "?"
        raise CommandError(f"-u: the current task (pid {pid}) has no user address space")
    if not opts.user:  # a guess: kept only if the process maps the address
        try:
            read_user(prog, mm, address, 1)
        except FaultError:
            return prog.read
    return partial(_read_user, prog, mm)


def _read_user(prog: Program, mm: Object, address: int, size: int) -> bytes:
    """A process's memory, an unmapped page named as crash's rd names it."""
    try:
        return read_user(prog, mm, address, size)
    except FaultError as exc:
        where = exc.address
        raise FaultError(f"invalid user virtual address: {where:#x}", where) from None


def current_task(session: Session) -> Object | None:
    """The task ``set`` chose, else the panic task (crash's current context)."""
    task = session.extra.get("task")
    return task if isinstance(task, Object) else panic_task(session.prog)


def _cstring(read: Reader, address: int, limit: int, page: int) -> bytes:
    """A NUL-terminated string read page by page through ``read`` (at most ``limit``)."""
    out = bytearray()
    while len(out) < limit:
        at = address + len(out)
        chunk = read(at, min(limit - len(out), page - (at & (page - 1))))
        end = chunk.find(b"\0")
        if end >= 0:
            return bytes(out + chunk[:end])
        out += chunk
    return bytes(out)


_RAW_CHUNK = 1 << 20  # bytes read and written at a time by rd -r


def _raw_copy(read: Reader, address: int, count: int, path: str) -> str:
    """crash's ``rd -r``: ``count`` bytes from ``address`` to a new file.  The file is
    created 0600 and must not exist (O_EXCL), nor be a symbolic link (O_NOFOLLOW): a
    dump's memory never lands where a link points, nor over an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise CommandError(f"-r: cannot create {path}: {exc.strerror}") from None
    written = 0
    with os.fdopen(fd, "wb") as f:
        while written < count:
            size = min(_RAW_CHUNK, count - written)
            try:
                data = read(address + written, size)
            except KdumpyError as exc:
                raise CommandError(f"{exc}: {written} bytes copied to {path} before it") from None
            f.write(data)
            written += size
    return f"{count} bytes copied from 0x{address:x} to {path}\n"


def symbolic_dump(prog: Program, address: int, data: bytes, slab: int = 0) -> str:
    """crash's ``rd -s``: two 64-bit words a line, each a symbol (``name+offset``)
    where it points into the kernel's or a module's symbols, no ASCII column.  With
    ``slab`` (``-S``), a word in a slab page shows as ``[cache]``; 2 (``-SS``) as
    ``[word:cache]``."""
    words = [_symbolic_word(prog, w, slab) for (w,) in struct.iter_unpack("<Q", data)]
    return "".join(
        f"{address + 8 * i:x}:  " + "".join(f"{w:<16} " for w in words[i : i + 2]) + "\n"
        for i in range(0, len(words), 2)
    )


def _symbolic_word(prog: Program, value: int, slab: int) -> str:
    text = symbolize(prog, value)
    if not slab or text != f"{value:016x}":
        return text
    cache = slab_cache_of(prog, value)
    if cache is None:
        return text
    name = shown(slab_cache_name(cache))
    return f"[{value:x}:{name}]" if slab > 1 else f"[{name}]"


def hexdump(address: int, data: bytes, width: int, radix: str = "x", ascii: bool = True,
            order: str = "<") -> str:  # fmt: skip
    """crash's rd layout: 16 bytes a line, values in the unit size, then ASCII (not
    with decimal values: ``radix`` "d" signed, "u" unsigned); ``order`` ">" reads
    the values in network byte order."""
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    if radix == "d":
        fmt = fmt.lower()
    digits = {"x": 2 * width, "d": len(str(-(1 << (8 * width - 1)))),
              "u": len(str((1 << 8 * width) - 1))}[radix]  # fmt: skip
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        n = len(chunk) // width
        values = struct.unpack(f"{order}{n}{fmt}", chunk[: n * width])
        if radix == "x":
            words = " ".join(f"{v:0{digits}x}" for v in values)
        else:
            words = " ".join(f"{v:>{digits}}" for v in values)
        line = f"{address + off:x}:  {words}"
        if ascii and radix == "x":
            text = "".join(chr(c) if 0x20 <= c < 0x7F else "." for c in chunk)
            line += " " * ((16 // width - n) * (digits + 1)) + f"   {text}"
        out.append(line + "\n")
    return "".join(out)


def pages_to_size(pages: int, page_size: int) -> str:
    """crash's size column: "0", "52 KB", "84.1 MB", "716 MB" (a ".0" is dropped)."""
    if not pages:
        return "0"
    size = pages * page_size
    if size >= 1 << 30:
        text = f"{size / (1 << 30):.1f} GB"
    elif size >= 1 << 20:
        text = f"{size / (1 << 20):.1f} MB"
    else:
        return f"{size // 1024} KB"
    return text.replace(".0 ", " ")


def _kmem_line(label: str, pages: int, page_size: int, of: tuple[str, int] | None) -> str:
    """One row: label, pages, size, and the share of a total ("----" for a total)."""
    head = f"{label:>13}  {pages:7d}  {pages_to_size(pages, page_size):>11}  "
    if of is None:
        return head + "       ----\n"
    name, total = of
    pct = pages * 100 // total if total else 0
    return head + f"{pct:3d}% of {name}\n"


def kmem_info(prog: Program) -> str:
    """``kmem -i``: the memory summary, from the kernel's own counters (the same ones
    /proc/meminfo reads)."""
    ps = prog.dump.page_size
    total = totalram_pages(prog)
    free = global_zone_page_state(prog, "NR_FREE_PAGES")
    try:
        slab = global_node_page_state(prog, "NR_SLAB_RECLAIMABLE_B") + global_node_page_state(
            prog, "NR_SLAB_UNRECLAIMABLE_B"
        )
    except KdumpyError:
        slab = 0
    buffers = _maybe(lambda: nr_blockdev_pages(prog))
    swapcache = _maybe(lambda: global_node_page_state(prog, "NR_SWAPCACHE"))
    cached = max(0, global_node_page_state(prog, "NR_FILE_PAGES") - swapcache - buffers)
    mem = ("TOTAL MEM", total)
    out = ["                 PAGES        TOTAL      PERCENTAGE\n"]
    out.append(_kmem_line("TOTAL MEM", total, ps, None))
    out.append(_kmem_line("FREE", free, ps, mem))
    out.append(_kmem_line("USED", total - free, ps, mem))
    out.append(
        _kmem_line("SHARED", _maybe(lambda: global_node_page_state(prog, "NR_SHMEM")), ps, mem)
    )
    out.append(_kmem_line("BUFFERS", buffers, ps, mem))
    out.append(_kmem_line("CACHED", cached, ps, mem))
    out.append(_kmem_line("SLAB", slab, ps, mem))
    huge, huge_free = hugetlb_pages(prog)
    out.append("\n" + _kmem_line("TOTAL HUGE", huge, ps, None))
    out.append(_kmem_line("HUGE FREE", huge_free, ps, ("TOTAL HUGE", huge)))
    swap, swap_free = swap_pages(prog)
    out.append("\n" + _kmem_line("TOTAL SWAP", swap, ps, None))
    out.append(_kmem_line("SWAP USED", swap - swap_free, ps, ("TOTAL SWAP", swap)))
    out.append(_kmem_line("SWAP FREE", swap_free, ps, ("TOTAL SWAP", swap)))
    limit = commit_limit(prog)
    out.append("\n" + _kmem_line("COMMIT LIMIT", limit, ps, None))
    committed = committed_pages(prog)
    out.append(_kmem_line("COMMITTED", committed, ps, ("TOTAL LIMIT", limit) if limit else None))
    return "".join(out)


def _maybe(func: Callable[[], int]) -> int:
    """A figure the kernel may not have (config, version): 0 when it is absent."""
    try:
        return int(func())
    except KdumpyError:
        return 0


def dis_python(opts: argparse.Namespace) -> str:
    address = address_expr(opts.address)
    if opts.count is not None:
        size, limit = f"{16 * opts.count}", f"[:{opts.count}]"
    else:
        size, limit = "(prog.symbols.next_after(address) or address + 256) - address", ""
    lines = ""
    if opts.lines:  # a line's place once, above its first instruction
        lines = """
    line = table.lookup(insn.address)
    if line is not None and line != last:
        print(f"{line.file}: {line.line}")
        last = line"""
    head = "table, last = line_table(prog), None\n" if opts.lines else ""
    return api_code(
        ["line_table"] if opts.lines else [],
        f"""{head}address = {address}
md = prog.arch.disassembler(capstone)
for insn in list(md.disasm(prog.read(address, {size}), address)){limit}:{lines}
    print(f"0x{{insn.address:x}} <{{prog.describe(insn.address)}}>:", insn.mnemonic, insn.op_str)
""",
        ["capstone"],
    )


@command("dis", "disassemble", Arg("address", metavar="address|symbol"),
         Arg("count", nargs="?", type=parse_count, help="instructions (the whole function)"),
         Arg("-l", dest="lines", action="store_true",
             help="source lines (needs the vmlinux with debug info)"),
         usage="dis [-l] address|symbol [count]", python=dis_python)  # fmt: skip
def cmd_dis(session: Session, opts: argparse.Namespace) -> str:
    try:
        import capstone
    except ImportError:
        raise CommandError(
            "dis needs capstone (a dependency of kdumpy: pip install capstone)"
        ) from None
    prog = session.prog
    table = None
    if opts.lines:
        try:
            table = line_table(prog)
        except LinesUnavailable as exc:
            raise CommandError(f"-l: {exc}") from None
    md = prog.arch.disassembler(capstone)
    address = resolve_address(session, opts.address)
    sym = prog.find_symbol(address)
    if opts.count is not None:
        count, limit = opts.count, 16 * opts.count
    elif sym is not None and sym.address == address:
        nxt = prog.symbols.next_after(address)
        limit = sym.size or ((nxt - address) if nxt else 256)  # the symbol's size if known
        count = 1 << 20
    else:
        count, limit = 1, 16
    code = prog.read(address, max(1, min(limit, 1 << 16)))
    out: list[str] = []
    shown_line = None
    for n, insn in enumerate(md.disasm(code, address)):
        if n >= count:
            break
        if table is not None:  # crash's -l: the source line above its first instruction
            line = table.lookup(insn.address)
            if line is not None and line != shown_line:
                out.append(f"{line.file}: {line.line}\n")
                shown_line = line
        where = prog.describe(insn.address)
        op = f"{insn.mnemonic} {insn.op_str}".strip()
        target = _branch_target(prog, insn.mnemonic, insn.op_str)
        out.append(f"0x{insn.address:x} <{where}>:\t{op}{target}\n")
    return "".join(out)


def _branch_target(prog: object, mnemonic: str, op: str) -> str:
    if not (mnemonic.startswith("j") or mnemonic == "call") or not op.startswith("0x"):
        return ""
    try:
        return f" <{prog.describe(int(op, 16))}>"  # type: ignore[attr-defined]
    except ValueError:
        return ""


def sym_python(opts: argparse.Namespace) -> str:
    if opts.all or opts.strings:
        want = f"any(s in sym.name for s in {opts.strings!r})" if opts.strings else "True"
        return api_code(
            [],
            f"""prog.load_modules()
for sym in prog.symbols.in_address_order():
    if {want}:
        print(f"{{sym.address:x}} ({{sym.type}}) {{sym.name}}")
""",
        )
    body = []
    for word in opts.words:
        number = int(word, 16) if _hex(word) else 0
        body.append(f"""sym = prog.symbols.lookup({word!r})
if sym is None:
    prog.load_modules()
    sym = prog.symbols.lookup({word!r})
if sym is not None:
    module = f" [{{sym.module}}]" if sym.module else ""
    print(f"{{sym.address:x}} ({{sym.type}}) {{sym.name}}{{module}}")
else:
    address = {number:#x}
    found = prog.find_symbol(address)
    print(f"{{address:x}} ({{found.type}}) {{found.describe(address)}}")
""")
    return api_code([], "".join(body))


def _hex(word: str) -> bool:
    try:
        int(word, 16)
    except ValueError:
        return False
    return True


@command("sym", "translate a symbol to its address, or vice versa",
         Arg("-l", dest="all", action="store_true", help="every symbol, by address"),
         Arg("-q", dest="strings", action="append", metavar="string",
             help="every symbol whose name contains the string (repeatable)"),
         Arg("-p", dest="prev", action="store_true", help="and the symbol before"),
         Arg("-n", dest="next", action="store_true", help="and the symbol after"),
         Arg("words", nargs="*", metavar="address|symbol"),
         usage="sym -l | -q string | [-p] [-n] address|symbol ...", python=sym_python)  # fmt: skip
def cmd_sym(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.all or opts.strings:
        if opts.words or opts.prev or opts.next:
            raise CommandError("-l and -q take no symbol, -p or -n")
        prog.load_modules()
        return "".join(_sym_row(s, s.address) for s in prog.symbols.in_address_order()
                       if opts.all or any(q in s.name for q in opts.strings))  # fmt: skip
    if not opts.words:
        raise CommandError("give -l, -q string, or an address or symbol")
    out = []
    for arg in opts.words:
        if opts.prev or opts.next:
            out.append(_sym_around(prog, arg, opts.prev, opts.next))
            continue
        sym = prog.symbols.lookup(arg)
        if sym is None:
            prog.load_modules()
            sym = prog.symbols.lookup(arg)
        if sym is not None:
            out.append(f"{sym.address:x} ({sym.type}) {sym.name}{_mod(sym.module)}\n")
            continue
        address = parse_number(arg)
        prog.load_modules()
        found = prog.find_symbol(address)
        if found is None:
            raise CommandError(f"invalid address: {arg}")
        out.append(f"{address:x} ({found.type}) {found.describe(address)}\n")
    return "".join(out)


def _sym_row(sym: Symbol, address: int) -> str:
    return f"{address:x} ({sym.type}) {sym.describe(address)}{_mod(sym.module)}\n"


def _sym_around(prog: Program, arg: str, prev: bool, nxt: bool) -> str:
    """``sym -p/-n``: the symbol an address or name falls in, and its neighbours."""
    prog.load_modules()
    named = prog.symbols.lookup(arg)
    address = named.address if named is not None else parse_number(arg)
    sym = named or prog.find_symbol(address)
    if sym is None:
        raise CommandError(f"invalid address: {arg}")
    below, above = prog.symbols.neighbours(sym.address)
    rows = [_sym_row(below, below.address)] if prev and below else []
    rows.append(_sym_row(sym, address))
    rows += [_sym_row(above, above.address)] if nxt and above else []
    return "".join(rows)


def _mod(module: str | None) -> str:
    return f" [{module}]" if module else ""
