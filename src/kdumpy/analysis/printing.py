"""Printing types and objects the way crash (through gdb) does.

struct list_head {
  next = 0xffff888003c1e0c8,
  prev = 0xffff888003c1e0c8
}
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kdumpy.analysis.objects import Object, ObjectProgram
from kdumpy.analysis.types import (
    ArrayType,
    EnumType,
    FunctionType,
    IntType,
    PointerType,
    StructType,
    Type,
)
from kdumpy.errors import KdumpyError

if TYPE_CHECKING:
    pass

_MAX_ARRAY = 64  # elements shown before "..."
# pahole writes DWARF's base type names into BTF; gdb (so crash) spells them as C does.
_GDB_SPELLING = {
    "long unsigned int": "unsigned long", "long int": "long",
    "long long unsigned int": "unsigned long long", "long long int": "long long",
    "short unsigned int": "unsigned short", "short int": "short",
}  # fmt: skip
_BASE_NAME = re.compile("|".join(sorted(map(re.escape, _GDB_SPELLING), key=len, reverse=True)))


def format_type(t: Type, offsets: bool = False) -> str:
    """A struct/union definition (``struct NAME`` without an address); ``offsets``:
    each member's byte offset in crash's ``-o`` layout.  Anonymous structs and unions
    are spelled out in place, as gdb and crash do."""
    s = t.strip()
    if not isinstance(s, StructType):
        return f"type = {t.spelling()}\nSIZE: {t.size}\n"
    width = len(str(s.size)) + 4  # crash's -o: "[offset]" right-aligned to the size's digits
    lines = [f"{s.spelling()} {{\n", *_member_lines(s, 0, 0, width if offsets else 0)]
    lines.append(f"}}\nSIZE: {s.size}\n")
    return "".join(lines)


def _member_lines(s: StructType, base: int, depth: int, width: int) -> list[str]:
    """Members at ``base`` bytes into the outer type, ``depth`` anonymous levels in;
    ``width`` of the offset column (0: none)."""
    blank = " " * width if width else "   "
    indent = "    " * depth
    lines = []
    for m in s.members:
        offset = base + m.offset
        inner = m.type.strip()
        if not m.name and isinstance(inner, StructType) and not inner.name:
            lines.append(f"{blank} {indent}{inner.kind} {{\n")
            lines += _member_lines(inner, offset, depth + 1, width)
            lines.append(f"{blank} {indent}}};\n")
            continue
        prefix = f"{f'[{offset}]':>{width}}" if width else blank
        bits = f" : {m.bit_size}" if m.bit_size else ""
        lines.append(f"{prefix} {indent}{declaration(m.type, m.name)}{bits};\n")
    return lines


def declaration(t: Type, name: str) -> str:
    if isinstance(t, ArrayType):
        return f"{declaration(t.element, name)}[{t.length}]"
    if isinstance(t, PointerType) and isinstance(t.target.strip(), FunctionType):
        return f"{t.target.strip().ret.spelling()} (*{name})()"  # type: ignore[attr-defined]
    s = _BASE_NAME.sub(lambda m: _GDB_SPELLING[m[0]], t.spelling())
    inner = t.strip() if not t.name else t
    if isinstance(inner, StructType) and not inner.name:
        s = f"{inner.kind} {{...}}"
    return f"{s} {name}".rstrip() if not s.endswith("*") else f"{s}{name}"


def format_value(obj: Object, indent: int = 0, radix: int = 10) -> str:
    """An object's value in gdb's ``print`` syntax; ``radix`` 16 prints integers in hex
    as ``p -x`` does (negative ones as their two's complement in the type's size)."""
    t = obj.type_.strip()
    pad = "  " * (indent + 1)
    try:
        if isinstance(t, StructType):
            parts = []
            for m in t.members:
                member = obj.member_(m.name) if m.name else _anonymous(obj, m)
                label = f"{m.name} = " if m.name else ""
                parts.append(f"{pad}{label}{format_value(member, indent + 1, radix)}")
            close = "  " * indent + "}"
            return "{\n" + ",\n".join(parts) + "\n" + close
        if isinstance(t, ArrayType):
            elem = t.element.strip()
            if isinstance(elem, IntType) and elem.size == 1:
                return _string(obj.read_bytes_())
            count = min(t.length, _MAX_ARRAY)
            shown = [format_value(obj[i], indent + 1, radix) for i in range(count)]
            more = ", ..." if t.length > _MAX_ARRAY else ""
            return "{" + ", ".join(shown) + more + "}"
        if isinstance(t, PointerType):
            value = int(obj)
            return f"{value:#x}{symbol_suffix(obj.prog_, value)}" if value else "0x0"
        if isinstance(t, EnumType):
            value = int(obj)
            return t.name_of(value) or str(value)
        if isinstance(t, IntType):
            value = int(obj)
            if t.is_bool:
                return "true" if value else "false"
            if radix == 16:
                return f"{value & ((1 << 8 * t.size) - 1):#x}"
            return f"{value} {_char(value & 0xFF)}" if t.size == 1 else str(value)
        return str(obj.value_())
    except KdumpyError as exc:
        return f"<error: {exc}>"


def _anonymous(obj: Object, m: object) -> Object:
    """An anonymous struct/union member as an object at its offset."""
    base = obj.address_ if obj.address_ is not None else 0
    return Object(obj.prog_, m.type, base + m.offset)  # type: ignore[attr-defined]


def _char(code: int) -> str:
    """A one-byte value as gdb shows it beside the number: ``'w'`` or ``'\\000'``."""
    if 0x20 <= code < 0x7F and code not in b"'\\":
        return f"'{chr(code)}'"
    return f"'\\{code:03o}'"


def _string(data: bytes) -> str:
    """A char array as crash prints it: every byte, up to the last NUL (which C
    implies), non-printable ones as octal escapes."""
    shown = data[:-1] if data.endswith(b"\0") else data
    text = "".join(chr(c) if 0x20 <= c < 0x7F and c not in b'"\\' else f"\\{c:03o}" for c in shown)
    return f'"{text}"'


def symbol_suffix(prog: ObjectProgram, address: int) -> str:
    """`` <init_task>`` or `` <init_task+2976>`` (decimal, as gdb) for pointers into
    the kernel image or modules (where gdb names them); nothing for other addresses."""
    if address < prog.arch.image_start:
        return ""
    sym = prog.find_symbol(address)
    if sym is None or address - sym.address >= 1 << 16:
        return ""
    offset = address - sym.address
    return f" <{sym.name}+{offset}>" if offset else f" <{sym.name}>"
