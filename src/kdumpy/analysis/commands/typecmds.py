"""struct, union, p, whatis, mod."""

from __future__ import annotations

import re

from kdumpy.analysis.commands import CommandError, Session, command, resolve_address
from kdumpy.analysis.helpers.modules import for_each_module, module_info
from kdumpy.analysis.objects import Object
from kdumpy.analysis.printing import format_type, format_value
from kdumpy.analysis.types import PointerType

_EXPR = re.compile(r"^(?P<op>[*&]?)(?P<name>[A-Za-z_]\w*)(?P<path>(?:(?:\.|->)\w+|\[\d+\])*)$")


def _struct(session: Session, kind: str, args: list[str]) -> str:
    offsets = "-o" in args
    args = [a for a in args if a != "-o"]
    if not args:
        raise CommandError(f"{kind} name required")
    name, _, members = args[0].partition(".")
    prog = session.prog
    t = prog.type(f"{kind} {name}")
    if len(args) == 1:
        if members:
            return f"  [{prog.offsetof(t, members)}] {members}\n"
        return format_type(t, offsets)
    address = resolve_address(session, args[1])
    if not prog.memory.is_valid(address, max(1, t.size)):
        raise CommandError(f'invalid kernel virtual address: {address:x}  type: "{t.spelling()}"')
    obj = prog.object_at(t, address)
    if members:
        return "".join(f"  {m} = {format_value(obj.member_(m), 1)}\n" for m in members.split(","))
    return f"{t.spelling()} {format_value(obj)}\n"


@command("struct", "structure contents", "struct name[.member[,member]] [address|symbol] [-o]")
def cmd_struct(session: Session, args: list[str]) -> str:
    return _struct(session, "struct", args)


@command("union", "union contents", "union name[.member] [address|symbol] [-o]")
def cmd_union(session: Session, args: list[str]) -> str:
    return _struct(session, "union", args)


def evaluate(session: Session, expr: str) -> Object:
    """``name``, ``name.member->member[3]``, ``&name``, ``*pointer``."""
    m = _EXPR.match(expr.replace(" ", ""))
    if not m:
        raise CommandError(f"cannot evaluate '{expr}' (globals, members, [index], & and *)")
    obj = session.prog.object(m["name"])
    for part in re.findall(r"(?:\.|->)\w+|\[\d+\]", m["path"]):
        is_index = part.startswith("[")
        obj = obj[int(part[1:-1])] if is_index else obj.member_(part.lstrip(".->"))
    if m["op"] == "&":
        obj = obj.address_of_()
    elif m["op"] == "*":
        obj = obj.deref_()
    return obj


@command("p", "print the value of an expression", "p expression")
def cmd_p(session: Session, args: list[str]) -> str:
    if not args:
        raise CommandError("expression required")
    expr = " ".join(args)
    obj = evaluate(session, expr)
    session.counter += 1
    value = format_value(obj)
    if isinstance(obj.type_.strip(), PointerType):
        value = f"({obj.type_.spelling()}) {value}"
    return f"{expr} = ${session.counter} = {value}\n"


@command("whatis", "search symbol table for data or type information", "whatis name")
def cmd_whatis(session: Session, args: list[str]) -> str:
    if not args:
        raise CommandError("name required")
    prog = session.prog
    name = " ".join(args)
    if name.split()[0] in ("struct", "union", "enum"):
        return format_type(prog.type(name))
    try:
        t = prog.variable_type(name)
        return f"{t.spelling()} {name};\n"
    except Exception:  # noqa: BLE001 - fall back to a type name
        return format_type(prog.type(name))


@command("mod", "module information", "mod")
def cmd_mod(session: Session, args: list[str]) -> str:
    prog = session.prog
    out = ["     MODULE       NAME                         BASE         SIZE  OBJECT FILE\n"]
    infos = sorted(
        (module_info(prog, mod) for mod in for_each_module(prog)), key=lambda i: i.address
    )
    for info in infos:
        out.append(
            f"{info.address:016x}  {info.name:<22} {info.base:016x} {info.size:>6}  "
            "(symbols and types from the dump)\n"
        )
    return "".join(out)
