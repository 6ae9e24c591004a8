"""ascii, eval, bpf."""

from __future__ import annotations

import argparse
import ast
import operator
from collections.abc import Callable

from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import RADIX_ARGS
from kdumpy.analysis.helpers.bpf import bpf_maps, bpf_progs, enum_name, used_map_ids
from kdumpy.analysis.objects import Object
from kdumpy.analysis.printing import format_value

_PRELUDE = "# prog = kdumpy.open(DUMP)\n"


@command("ascii", "translate a hexadecimal string to ASCII",
         Arg("values", nargs="+", metavar="value"), usage="ascii value ...",
         python=lambda o: "".join(
             f"print(int({_hex(v):#x}).to_bytes(8, 'little'))\n" for v in o.values))  # fmt: skip
def cmd_ascii(session: Session, opts: argparse.Namespace) -> str:
    return "".join(f"{_hex(v):016x}: {_ascii(_hex(v))}\n" for v in opts.values)


def _hex(text: str) -> int:
    try:
        return int(text.removeprefix("0x"), 16) & ((1 << 64) - 1)
    except ValueError:
        raise CommandError(f"invalid hexadecimal value: {text}") from None


def _ascii(value: int) -> str:
    """The 8 bytes of a word in memory order; NUL and other controls spelled out."""
    out = []
    for b in value.to_bytes(8, "little"):
        out.append(chr(b) if 0x20 <= b < 0x7F else "<NUL>" if b == 0 else f"<{b:02x}>")
    return "".join(out)


_BINARY: dict[type, Callable[[int, int], int]] = {
           ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Div: operator.floordiv, ast.Mod: operator.mod,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
           ast.BitOr: operator.or_, ast.BitXor: operator.xor}  # fmt: skip
_UNARY: dict[type, Callable[[int], int]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_MASK = (1 << 64) - 1


def evaluate(text: str) -> int:
    """An integer expression as crash's ``eval`` takes it (``0x`` hex or decimal, C
    operators, parentheses), in 64-bit two's complement; nothing but arithmetic runs."""
    try:
        tree = ast.parse(text.replace("/", "//").replace("////", "//"), mode="eval")
    except SyntaxError:
        raise CommandError(f"bad expression: {text}") from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.FloorDiv | ast.Mod) and right == 0:
                raise CommandError("division by zero")
            if isinstance(node.op, ast.LShift) and right > 128:
                raise CommandError("shift too large")
            return _BINARY[type(node.op)](left, right) & _MASK
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand)) & _MASK
        raise CommandError(f"bad expression: {text}")

    return value(tree.body) & _MASK


def _size(value: int) -> str:
    """crash's ``(128KB)``: the value in the largest unit dividing it."""
    for unit, name in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")):
        if value and value % unit == 0:
            return f"  ({value // unit}{name})"
    return ""


@command("eval", "evaluate an integer expression",
         Arg("-b", dest="bits", action="store_true", help="also list the bits set"),
         Arg("-l", dest="long", action="store_true",
             help="64-bit values (as always here: the dumps kdumpy reads are 64-bit)"),
         Arg("words", nargs="+", metavar="expression"), usage="eval [-b] [-l] expression",
         python=lambda o: f"print(hex({' '.join(o.words)}))\n")  # fmt: skip
def cmd_eval(session: Session, opts: argparse.Namespace) -> str:
    v = evaluate(" ".join(opts.words))
    out = (f"hexadecimal: {v:x}{_size(v)}\n    decimal: {v}\n      octal: {v:o}\n"
           f"     binary: {v:064b}\n")  # fmt: skip
    if opts.bits:
        out += "   bits set: " + " ".join(str(b) for b in range(63, -1, -1) if v >> b & 1) + "\n"
    return out


def bpf_python(opts: argparse.Namespace) -> str:
    pick_prog = f"if int(p.aux.id) == {opts.progs}" if opts.progs not in (None, ALL) else "if True"
    pick_map = f"if int(m.id) == {opts.maps}" if opts.maps not in (None, ALL) else "if True"
    dump_prog = dump_map = ""
    if opts.struct:  # -s: the structures themselves, integers in the radix -x/-d chose
        radix = opts.radix
        dump_prog = (f"\n        print('struct bpf_prog', format_value(p.deref_(), 0, {radix}))"
                     f"\n        print('struct bpf_prog_aux', format_value(p.aux.deref_(), 0, "
                     f"{radix}))")  # fmt: skip
        dump_map = f"\n        print('struct bpf_map', format_value(m.deref_(), 0, {opts.radix}))"
    both = opts.progs is None and opts.maps is None
    code = _PRELUDE + (
        "from kdumpy.analysis.api import format_value\n"
        "from kdumpy.analysis.helpers.bpf import bpf_progs, bpf_maps, used_map_ids\n"
    )
    if opts.progs is not None or both:
        code += (
            "for p in bpf_progs(prog):\n"
            f"    {pick_prog}:\n"
            f"        print(int(p.aux.id), hex(int(p)), int(p.type), used_map_ids(p)){dump_prog}\n"
        )
    if opts.maps is not None or both:
        code += (
            "for m in bpf_maps(prog):\n"
            f"    {pick_map}:\n"
            "        print(int(m.id), hex(int(m)), int(m.map_type),\n"
            f"              hex(int(m.map_flags))){dump_map}\n"
        )
    return code


ALL = -1  # -p / -m without an ID: every program / map


@command("bpf", "eBPF programs and maps",
         Arg("-p", dest="progs", nargs="?", type=int, const=ALL, metavar="ID",
             help="programs only (the one with this ID)"),
         Arg("-m", dest="maps", nargs="?", type=int, const=ALL, metavar="ID",
             help="maps only (the one with this ID)"),
         Arg("-s", dest="struct", action="store_true",
             help="with -p / -m: each program's struct bpf_prog and struct bpf_prog_aux, "
                  "each map's struct bpf_map"),
         *RADIX_ARGS,
         usage="bpf [-p [ID]] [-m [ID]] [-s [-x|-d]]", python=bpf_python)  # fmt: skip
def cmd_bpf(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if opts.struct and opts.progs is None and opts.maps is None:
        raise CommandError("-s shows the structures of the programs (-p) or maps (-m) chosen")
    both = opts.progs is None and opts.maps is None
    progs = [p for p in bpf_progs(prog) if opts.progs in (None, ALL, int(p.aux.id))]
    maps = [m for m in bpf_maps(prog) if opts.maps in (None, ALL, int(m.id))]
    for flag, wanted, found in (("-p", opts.progs, progs), ("-m", opts.maps, maps)):
        if wanted not in (None, ALL) and not found:
            raise CommandError(f"{flag} {wanted}: no such {'program' if flag == '-p' else 'map'}")
    out = []
    if opts.progs is not None or both:
        out.append("ID  BPF_PROG  BPF_PROG_AUX  BPF_PROG_TYPE  TAG  USED_MAPS\n")
        for p in progs:
            kind = enum_name(prog, "bpf_prog_type", int(p.type), "BPF_PROG_TYPE_")
            tag = p.tag.read_bytes_().hex()
            maps_used = ",".join(map(str, used_map_ids(p)))
            out.append(f"{int(p.aux.id)}  {int(p):x}  {int(p.aux):x}  {kind}  {tag}  {maps_used}\n")
            if opts.struct:
                out.append(_struct_block("struct bpf_prog", p, opts.radix))
                out.append(_struct_block("struct bpf_prog_aux", p.aux, opts.radix))
    if both:
        out.append("\n")
    if opts.maps is not None or both:
        out.append("ID  BPF_MAP  BPF_MAP_TYPE  MAP_FLAGS\n")
        for m in maps:
            kind = enum_name(prog, "bpf_map_type", int(m.map_type), "BPF_MAP_TYPE_")
            out.append(f"{int(m.id)}  {int(m):x}  {kind}  {int(m.map_flags):x}\n")
            if opts.struct:
                out.append(_struct_block("struct bpf_map", m, opts.radix))
    return "".join(out)


def _struct_block(name: str, pointer: Object, radix: int) -> str:
    """``bpf -s``: a structure as ``struct NAME {...}`` (gdb's print layout, as crash
    shows it), after a blank line."""
    return f"\n{name} {format_value(pointer.deref_(), 0, radix)}\n"
