"""bt: a task's kernel stack, with each frame's words (``-f``) or the exception frames
found on it (``-e``)."""

from __future__ import annotations

import argparse
import struct
from collections.abc import Callable
from functools import partial

from kdumpy.analysis.commands import parse_cpus
from kdumpy.analysis.commands.apicode import api_code, task_expr
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.tasksel import task_from_arg, task_line
from kdumpy.analysis.helpers.symbolize import symbolize
from kdumpy.analysis.helpers.tasks import active_tasks, panic_task
from kdumpy.analysis.lines import LinesUnavailable, LineTable, line_table
from kdumpy.analysis.memory import FaultError
from kdumpy.analysis.objects import Object
from kdumpy.analysis.program import Program, TypesMissingError
from kdumpy.analysis.unwind import Frame, panic_cpu_trace, stack_trace
from kdumpy.arch.stack_select import stack_rules
from kdumpy.printable import shown


def format_backtrace(
    task: Object,
    frames: list[Frame],
    after: Callable[[int], str] | None = None,
    name_of: Callable[[Frame], str] | None = None,
) -> str:
    """A task's backtrace in crash's layout; ``after(i)`` adds lines below frame ``i``
    (``bt -f``: its stack words); ``name_of`` names a frame's place (``bt -s``:
    ``symbol+offset``) instead of its function's name."""
    stack = stack_rules(task.prog_.arch)
    out = [task_line(task)]
    for i, frame in enumerate(frames):
        if frame.left_irq_stack:
            out.append("--- <IRQ stack> ---\n")
        if frame.regs is not None and not stack.from_user_mode(frame.regs):
            out.append(stack.regs_block(frame.regs, frame.location()))
        name = shown(name_of(frame) if name_of is not None else frame.name)
        out.append(f"{'#' + str(i):>3} [{frame.slot:x}] {name} at {frame.pc:x}\n")
        if after is not None:
            out.append(after(i))
        if frame.user_regs is not None:
            out.append(stack.regs_block(frame.user_regs, ""))
    if not frames:
        out.append("  (no stack frames)\n")
    return "".join(out)


def bt_text(prog: Program, task: Object, opts: argparse.Namespace) -> str:
    """One task's backtrace, with each frame's stack words for ``-f``; ``-e`` lists
    the exception frames found on the stack instead."""
    if opts.eframes:
        return _exception_text(prog, task)
    frames = stack_trace(prog, task)
    parts: list[Callable[[int], str]] = []
    if opts.lines:
        table = line_table(prog)
        parts.append(lambda i: _source_line(table, frames[i].pc))
    if opts.words or opts.symbolic:
        parts.append(partial(frame_words, prog, frames, symbolic=opts.symbolic))
    after = (lambda i: "".join(part(i) for part in parts)) if parts else None
    name_of = partial(frame_place, prog, radix=opts.radix) if opts.offsets else None
    return format_backtrace(task, frames, after, name_of)


def frame_place(prog: Program, frame: Frame, radix: int = 10) -> str:
    """``bt -s``: the frame's pc as ``symbol+offset`` (crash's ``value_to_symstr``: the
    offset in decimal, ``+0x...`` for ``-x``, none at a symbol's start); the function's
    name when no symbol covers the pc."""
    sym = prog.find_symbol(frame.pc)
    if sym is None:
        return frame.name
    offset = frame.pc - sym.address
    if not offset:
        return sym.name
    return f"{sym.name}+{offset:#x}" if radix == 16 else f"{sym.name}+{offset}"


# Why ``bt -V`` cannot print local variables, in the one line it answers with.
NO_LOCALS = (
    "-V: local variables need the DWARF of each function (location lists), which kdumpy "
    "does not read; crash 8.0.2 has no -V either (drgn's crash mode prints them)"
)


def _source_line(table: LineTable, pc: int) -> str:
    """``bt -l``: the frame's ``file: line`` under it, as crash prints it."""
    found = table.lookup(pc)
    return f"    {found.file}: {found.line}\n" if found else ""


def bt_python(opts: argparse.Namespace) -> str:
    """``bt --python``: the frames of each task chosen, from :func:`stack_trace`."""
    names = {"stack_trace", "task_comm"}
    modules: set[str] = set()
    if opts.active:
        chosen = "tasks = [task for _, task in sorted(active_tasks(prog).items())]"
        names.add("active_tasks")
    elif opts.cpus is not None:
        chosen = f"tasks = [active_tasks(prog)[cpu] for cpu in {opts.cpus!r}]"
        names.add("active_tasks")
    elif opts.panic:
        chosen = "tasks = [panic_task(prog)]"
        names.add("panic_task")
    else:
        exprs = []
        for arg in opts.tasks or [None]:
            expr, used = task_expr(arg)
            exprs.append(expr)
            names |= used
        chosen = f"tasks = [{', '.join(exprs)}]"
    if opts.eframes:
        modules.add("kdumpy.analysis.commands.backtrace")
        body = """
    for address, regs in kdumpy.analysis.commands.backtrace.exception_frames(prog, task):
        mode = "USER" if regs["cs"] & 3 else "KERNEL"
        print(f"  {mode}-MODE EXCEPTION FRAME AT: {address:x}  RIP: {regs['ip']:016x}")"""
    else:
        where = "{frame.name}"
        if opts.offsets:  # symbol+offset: the symbol covering the frame's pc
            offset = "{frame.pc - sym.address:#x}" if opts.radix == 16 else (
                "{frame.pc - sym.address}")  # fmt: skip
            where = f"{{sym.name}}+{offset}"
        body = f"""
    frames = stack_trace(prog, task)
    for i, frame in enumerate(frames):
        sym = prog.find_symbol(frame.pc)
        print(f"#{{i}} [{{frame.slot:x}}] {where} at {{frame.pc:x}}")"""
        if opts.lines:  # needs the vmlinux: prog = kdumpy.open(DUMP, VMLINUX)
            names.add("line_table")
            chosen = f"table = line_table(prog)\n{chosen}"
            body += """
        line = table.lookup(frame.pc)
        if line is not None:
            print(f"    {line.file}: {line.line}")"""
        if opts.words or opts.symbolic:
            modules.add("struct")
            shown = "symbolize(prog, word)" if opts.symbolic else 'f"{word:016x}"'
            if opts.symbolic:
                names.add("symbolize")
            body += f"""
        if i + 1 < len(frames):  # the words above the return address, up to the caller's
            start, end = frame.slot + 8, frames[i + 1].slot + 8
            for (word,) in struct.iter_unpack("<Q", prog.read(start, end - start)):
                print("   ", {shown})"""
    return api_code(
        names,
        f"""{chosen}
for task in tasks:
    print(f"PID: {{int(task.pid)}}  TASK: {{int(task):x}}  COMMAND: {{task_comm(task)!r}}")
{body.strip(chr(10))}
""",
        modules,
    )


@command("bt", "backtrace",
         Arg("-a", dest="active", action="store_true", help="the task active on each CPU"),
         Arg("-e", dest="eframes", action="store_true", help="exception frames on the stack"),
         Arg("-f", dest="words", action="store_true", help="each frame's stack words"),
         Arg("-F", dest="symbolic", action="store_true",
             help="each frame's stack words, symbolically where they point at a symbol"),
         Arg("-l", dest="lines", action="store_true", help="source lines (needs DWARF)"),
         Arg("-c", dest="cpus", metavar="cpus", type=parse_cpus,
             help="the task active on these CPUs (3, 1,8,9, 1-23, 1,8,9-14)"),
         Arg("-p", dest="panic", action="store_true", help="the panic task"),
         Arg("-s", dest="offsets", action="store_true",
             help="each frame's place as symbol+offset"),
         Arg("-x", dest="radix", action="store_const", const=16, default=None,
             help="with -s: offsets in hexadecimal"),
         Arg("-d", dest="radix", action="store_const", const=10,
             help="with -s: offsets in decimal (the default)"),
         Arg("-V", dest="variables", action="store_true",
             help="local variables: not possible in kdumpy (says why)"),
         Arg("tasks", nargs="*", metavar="pid|task", help="pids or task_struct addresses"),
         usage="bt [-a|-c cpus|-p] [-e] [-f|-F] [-l] [-s [-x|-d]] [pid | task ...]",
         python=bt_python)  # fmt: skip
def cmd_bt(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.variables:
        raise CommandError(NO_LOCALS)
    if opts.radix is not None and not opts.offsets:
        raise CommandError("-x and -d choose how -s shows offsets: give -s")
    if opts.lines:  # source lines need DWARF line tables, which neither dump nor BTF carry
        try:
            line_table(prog)
        except LinesUnavailable as exc:
            raise CommandError(f"-l: {exc}") from None
    if opts.active or opts.cpus is not None:
        active = active_tasks(prog)
        wanted = sorted(active) if opts.active else opts.cpus
        missing = [cpu for cpu in wanted if cpu not in active]
        if missing:
            raise CommandError(f"no active task on CPU {missing[0]}")
        tasks = [active[cpu] for cpu in wanted]
    elif opts.panic:
        found = panic_task(prog)
        if found is None:
            raise CommandError("no panic task found")
        tasks = [found]
    elif opts.tasks:
        tasks = [task_from_arg(session, a) for a in opts.tasks]
    else:
        try:
            current = session.extra.get("task") or panic_task(prog)
        except TypesMissingError as exc:  # issue 10 item 7: the panic CPU's stack still
            return _bt_without_types(prog, exc)
        if current is None:
            raise CommandError("no panic task found; give a pid")
        tasks = [current]  # type: ignore[list-item]
    return "\n".join(bt_text(prog, t, opts) for t in tasks)


def _bt_without_types(prog: Program, why: TypesMissingError) -> str:
    """No types to find tasks with: the panic CPU's frames from its registers."""
    found = panic_cpu_trace(prog)
    if found is None:
        raise CommandError(str(why))
    cpu, frames = found
    out = [f"CPU: {cpu}  (task unknown: {why})\n"]
    out += [f"{'#' + str(i):>3} [{f.slot:x}] {f.name} at {f.pc:x}\n" for i, f in enumerate(frames)]
    return "".join(out)


_MAX_FRAME_BYTES = 16 << 10  # a larger "frame" means a corrupt stack: stop there


def frame_words(prog: Program, frames: list[Frame], i: int, symbolic: bool = False) -> str:
    """The stack words of frame ``i`` (``bt -f``): from above its return-address slot
    up to and including the caller's slot, two words a line like crash.  The last
    frame (the entry from user space or the stack's end) shows none.  ``symbolic``
    (``bt -F``): a word pointing into the kernel's or a module's symbols is shown as
    ``symbol+offset``, 16 columns wide like crash."""
    if i + 1 >= len(frames):
        return ""
    start, end = frames[i].slot + 8, frames[i + 1].slot + 8
    if not 0 < end - start <= _MAX_FRAME_BYTES:
        return ""
    out = []
    for line in range(start, end, 16):
        try:
            data = prog.read(line, min(16, end - line))
        except FaultError:
            out.append(f"    {line:x}: (stack page not in the dump)\n")
            break
        words = struct.unpack(f"<{len(data) // 8}Q", data)
        shown_words = [symbolize(prog, w) if symbolic else f"{w:016x}" for w in words]
        out.append(f"    {line:x}: " + "".join(f"{w:<16} " for w in shown_words) + "\n")
    return "".join(out)


def exception_frames(prog: Program, task: Object) -> list[tuple[int, dict[str, int]]]:
    """``(address, registers)`` of every place on the task's stack that looks like an
    exception frame (``bt -e``), as the architecture recognises them."""
    arch = prog.arch
    base = int(task.stack)
    data = prog.read(base, arch.stack_size(prog.dump.page_size))
    words = struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])

    def is_text(address: int) -> bool:
        sym = prog.find_symbol(address)
        return sym is not None and sym.type in "tTwW"

    return stack_rules(arch).scan_exception_frames(words, base, is_text)


def _exception_text(prog: Program, task: Object) -> str:
    """``bt -e``: the task line, then each exception frame found on its stack in crash's
    layout."""
    pc_name = prog.arch.registers.pc
    stack = stack_rules(prog.arch)
    out = [task_line(task)]
    for address, regs in exception_frames(prog, task):
        user = stack.from_user_mode(regs)
        out.append(f"\n  {'USER' if user else 'KERNEL'}-MODE EXCEPTION FRAME AT: {address:x}\n")
        where = ""
        if not user:
            pc = regs[pc_name]
            sym = prog.find_symbol(pc)
            where = f"{sym.name}+{pc - sym.address}" if sym else f"{pc:x}"
        out.append(stack.regs_block(regs, where))
    return "".join(out)
