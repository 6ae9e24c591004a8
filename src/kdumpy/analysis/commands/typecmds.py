"""struct, union, p, whatis, mod."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable

from kdumpy.analysis.commands import resolve_address
from kdumpy.analysis.commands.apicode import address_expr, api_code
from kdumpy.analysis.commands.base import Arg, CommandError, Session, command
from kdumpy.analysis.commands.output import RADIX_ARGS
from kdumpy.analysis.helpers.modules import (
    for_each_module,
    module_file_key,
    module_info,
    module_name,
    module_objects,
    module_search_dirs,
)
from kdumpy.analysis.helpers.system import taint_chars
from kdumpy.analysis.objects import Object
from kdumpy.analysis.printing import declaration, format_type, format_value
from kdumpy.analysis.program import Program
from kdumpy.analysis.types import VOID, ArrayType, PointerType, StructType, Type
from kdumpy.errors import KdumpyError
from kdumpy.printable import shown


def _struct(session: Session, kind: str, opts: argparse.Namespace) -> str:
    """A struct or union type (with member offsets for ``-o``), one member's offset, or
    its contents at an address."""
    name, _, members = opts.name.partition(".")
    prog = session.prog
    t = prog.type(f"{kind} {name}")
    if opts.address is None:
        if opts.count is not None or opts.offset:
            raise CommandError("-c and -l need an address")
        if members:
            return f"  [{prog.offsetof(t, members)}] {members}\n"
        return format_type(t, opts.offsets)
    address = resolve_address(session, opts.address)
    if opts.offset:  # -l: the address is this member's (or this many bytes in)
        spec, dot, member = opts.offset.partition(".")
        address -= prog.offsetof(f"{kind} {spec}", member) if dot else int(opts.offset, 0)
    count = 1 if opts.count is None else opts.count
    if not count or abs(count) > 1 << 16:
        raise CommandError(f"invalid count: {count}")
    first = address if count > 0 else address + (count + 1) * t.size  # -c -N: N up to it
    shown = []
    for i in range(abs(count)):
        at = first + i * t.size
        if not prog.memory.is_valid(at, max(1, t.size)):
            raise CommandError(f'invalid kernel virtual address: {at:x}  type: "{t.spelling()}"')
        obj = prog.object_at(t, at)
        if members:
            shown.append("".join(f"  {m} = {format_value(obj.member_(m), 1, opts.radix)}\n"
                                 for m in members.split(",")))  # fmt: skip
        else:
            shown.append(f"{t.spelling()} {format_value(obj, 0, opts.radix)}\n")
    return "\n".join(shown)


def struct_python(kind: str) -> Callable[[argparse.Namespace], str]:
    """``struct --python`` (and union's): the type's layout, or the object there."""

    def code(opts: argparse.Namespace) -> str:
        name, _, members = opts.name.partition(".")
        spec = f"{kind} {name}"
        if opts.address is None:
            if members:
                return api_code([], f"print(prog.offsetof({spec!r}, {members!r}))\n")
            body = f"print(format_type(prog.type({spec!r}), offsets={bool(opts.offsets)}))\n"
            return api_code(["format_type"], body)
        head = f"obj = prog.object_at({spec!r}, {address_expr(opts.address)})\n"
        if members:
            body = "".join(
                f"print({m!r}, '=', format_value(obj.member_({m!r})))\n" for m in members.split(",")
            )
        else:
            body = "print(format_value(obj))\n"
        return api_code(["format_value"], head + body)

    return code


_STRUCT_ARGS = (
    Arg("-o", dest="offsets", action="store_true", help="member offsets"),
    Arg("name", metavar="name[.member[,member]]"),
    Arg("address", nargs="?", metavar="address|symbol", help="show the contents there"),
    Arg(
        "-c",
        dest="count",
        type=int,
        metavar="count",
        help="this many consecutive ones (negative: ending at the address)",
    ),
    Arg(
        "-l",
        dest="offset",
        metavar="offset|struct.member",
        help="the address is this far into the structure (a list_head's, say)",
    ),
    *RADIX_ARGS,
)


@command("struct", "structure contents", *_STRUCT_ARGS,
         usage="struct name[.member[,member]] [address|symbol] [-o] [-c count] [-l offset] "
               "[-x|-d]",
         python=struct_python("struct"))  # fmt: skip
def cmd_struct(session: Session, opts: argparse.Namespace) -> str:
    return _struct(session, "struct", opts)


@command("union", "union contents", *_STRUCT_ARGS,
         usage="union name[.member] [address|symbol] [-o] [-c count] [-l offset] [-x|-d]",
         python=struct_python("union"))  # fmt: skip
def cmd_union(session: Session, opts: argparse.Namespace) -> str:
    return _struct(session, "union", opts)


_TOKEN = re.compile(r"\s*(0[xX][0-9a-fA-F]+|\d+|[A-Za-z_]\w*|->|[().\[\]*&])")
# Words that start a type name inside a cast, besides struct/union/enum and typedefs.
_TYPE_WORDS = frozenset(
    {"unsigned", "signed", "long", "int", "char", "short", "void", "_Bool", "bool"}
)


class _Expression:
    """A C expression as gdb's ``print`` takes it, the subset crash users type:
    globals, numbers, enumerators, ``.``, ``->``, ``[index]``, unary ``*`` and ``&``,
    casts ``(type)`` and parentheses.  Evaluated straight into :class:`Object`\\ s."""

    def __init__(self, session: Session, text: str) -> None:
        self.prog = session.prog
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                if text[pos:].strip():
                    raise CommandError(f"cannot parse '{text}' at '{text[pos:].strip()}'")
                break
            self.tokens.append(m[1])
            pos = m.end()
        self.pos = 0

    # -- tokens -------------------------------------------------------------------------
    def _peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else ""

    def _take(self, expected: str | None = None) -> str:
        tok = self._peek()
        if not tok or (expected is not None and tok != expected):
            want = f"'{expected}'" if expected else "more"
            raise CommandError(f"cannot parse '{self.text}': expected {want} at '{tok}'")
        self.pos += 1
        return tok

    # -- grammar --------------------------------------------------------------------------
    def parse(self) -> Object:
        obj = self._unary()
        if self._peek():
            raise CommandError(f"cannot parse '{self.text}' at '{self._peek()}'")
        return obj

    def _unary(self) -> Object:
        tok = self._peek()
        if tok == "*":
            self._take()
            return _deref(self._unary())
        if tok == "&":
            self._take()
            return self._address_of()
        if tok == "(" and self._is_type(self._peek(1)):
            self._take()
            t = self._type_name()
            self._take(")")
            return _cast(self._unary(), t)
        return self._postfix(self._primary())

    def _address_of(self) -> Object:
        """``&x``; a bare symbol whose type is unknown still has an address."""
        name = self._peek()
        if re.fullmatch(r"[A-Za-z_]\w*", name) and self._peek(1) in ("", ")"):
            self._take()
            try:
                obj = self.prog.object(name)
            except KdumpyError:
                return self.prog.pointer(VOID, self.prog.symbol_address(name))
            return obj.address_of_()
        return self._unary().address_of_()

    def _postfix(self, obj: Object) -> Object:
        while True:
            tok = self._peek()
            if tok in (".", "->"):
                self._take()
                obj = obj.member_(self._take())
            elif tok == "[":
                self._take()
                index = int(self._unary())
                self._take("]")
                obj = obj[index]
            else:
                return obj

    def _primary(self) -> Object:
        tok = self._take()
        if tok == "(":
            obj = self._unary()
            self._take(")")
            return obj
        if tok[0].isdigit():
            return self.prog.value("unsigned long", int(tok, 0))
        if not re.fullmatch(r"[A-Za-z_]\w*", tok):
            raise CommandError(f"cannot parse '{self.text}' at '{tok}'")
        if not self.prog.has_symbol(tok):
            try:
                return self.prog.value("long", self.prog.constant(tok))
            except KdumpyError:
                pass
        return self.prog.object(tok)

    def _is_type(self, word: str) -> bool:
        if word in ("struct", "union", "enum") or word in _TYPE_WORDS:
            return True
        if not re.fullmatch(r"[A-Za-z_]\w*", word) or self.prog.has_symbol(word):
            return False
        try:
            self.prog.type(word)
        except KdumpyError:
            return False
        return True

    def _type_name(self) -> Type:
        words = []
        while self._peek() not in (")", "*", ""):
            words.append(self._take())
        stars = 0
        while self._peek() == "*":
            self._take()
            stars += 1
        return self.prog.type(" ".join(words) + " " + "*" * stars)


def _deref(obj: Object) -> Object:
    t = obj.type_.strip()
    if isinstance(t, PointerType) and t.target.strip().kind in ("void", "function"):
        raise CommandError(f"cannot dereference {obj.type_.spelling()}")
    return obj.deref_()


def _cast(obj: Object, t: Type) -> Object:
    """``(type)obj``: integers are truncated to the new size like C does (``cast_``)."""
    s = t.strip()
    if isinstance(s, StructType | ArrayType) and isinstance(obj.type_.strip(), PointerType):
        raise CommandError(f"cannot cast a pointer to {t.spelling()}")
    return obj.cast_(t)


def evaluate(session: Session, expr: str) -> Object:
    """The value of a C expression (see :class:`_Expression`)."""
    return _Expression(session, expr).parse()


class _PythonExpression:
    """The Python (API calls) for a C expression of :class:`_Expression`'s grammar,
    written without the dump at hand: a parenthesised name followed by an operand is a
    cast, an all-capitals name an enumerator, any other name a global."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = [m[1] for m in _TOKEN.finditer(text)]
        self.pos = 0

    def _peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else ""

    def _take(self) -> str:
        tok = self._peek()
        if not tok:
            raise CommandError(f"cannot parse '{self.text}'")
        self.pos += 1
        return tok

    def parse(self) -> str:
        code = self._unary()
        if self._peek():
            raise CommandError(f"cannot parse '{self.text}' at '{self._peek()}'")
        return code

    def _cast_end(self) -> int:
        """Tokens to the ``)`` of a cast at the current ``(``, or 0 if it is none."""
        depth_end = next((i for i in range(self.pos, len(self.tokens))
                          if self.tokens[i] == ")"), 0)  # fmt: skip
        if not depth_end or depth_end + 1 >= len(self.tokens):
            return 0
        inside = self.tokens[self.pos + 1 : depth_end]
        operand = self.tokens[depth_end + 1]
        words_only = all(re.fullmatch(r"[A-Za-z_]\w*|\*", t) for t in inside)
        starts_operand = re.fullmatch(r"[A-Za-z_0-9(*&]\w*|\(", operand) is not None
        return depth_end if inside and words_only and starts_operand else 0

    def _unary(self) -> str:
        tok = self._peek()
        if tok == "*":
            self._take()
            return f"{self._unary()}.deref_()"
        if tok == "&":
            self._take()
            return f"{self._unary()}.address_of_()"
        if tok == "(" and (end := self._cast_end()):
            type_name = " ".join(self.tokens[self.pos + 1 : end]).replace(" *", "*")
            self.pos = end + 1
            return f"{self._unary()}.cast_({type_name.replace('*', ' *')!r})"
        return self._postfix(self._primary())

    def _postfix(self, code: str) -> str:
        while True:
            tok = self._peek()
            if tok in (".", "->"):
                self._take()
                code = f"{code}.member_({self._take()!r})"
            elif tok == "[":
                self._take()
                index = self._unary()
                if self._take() != "]":
                    raise CommandError(f"cannot parse '{self.text}'")
                code = f"{code}[int({index})]"
            else:
                return code

    def _primary(self) -> str:
        tok = self._take()
        if tok == "(":
            code = self._unary()
            self._take()
            return code
        if tok[0].isdigit():
            return f'prog.value("unsigned long", {int(tok, 0)})'
        if tok.isupper():
            return f'prog.value("long", prog.constant({tok!r}))'
        return f"prog.object({tok!r})"


def p_python(opts: argparse.Namespace) -> str:
    code = _PythonExpression(" ".join(opts.expression)).parse()
    return api_code(["format_value"], f"print(format_value({code}))\n")


@command("p", "print the value of an expression", Arg("expression", nargs="+"), *RADIX_ARGS,
         usage="p [-x|-d] expression", python=p_python)  # fmt: skip
def cmd_p(session: Session, opts: argparse.Namespace) -> str:
    expr = " ".join(opts.expression)
    obj = evaluate(session, expr)
    prog = session.prog
    if obj.address_ is not None:
        # Fail on the whole object, in one line, rather than inside its printout.
        prog.read(obj.address_, max(1, min(obj.type_.size, 1 << 16)))
    value = format_value(obj, 0, opts.radix)
    if isinstance(obj.type_.strip(), PointerType):
        value = f"({obj.type_.spelling()}) {value}"
    session.counter += 1
    # crash names a plain symbol: "jiffies = $1 = ..."; an expression is just "$2 = ...".
    name = f"{expr} = " if re.fullmatch(r"[A-Za-z_]\w*", expr) else ""
    return f"{name}${session.counter} = {value}\n"


def whatis_python(opts: argparse.Namespace) -> str:
    name = " ".join(opts.name)
    if name.split()[0] in ("struct", "union", "enum"):
        return api_code(["format_type"], f"print(format_type(prog.type({name!r})))\n")
    return api_code([], f"print(prog.variable_type({name!r}).spelling(), {name!r})\n")


@command("whatis", "search symbol table for data or type information", Arg("name", nargs="+"),
         usage="whatis name", python=whatis_python)  # fmt: skip
def cmd_whatis(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    name = " ".join(opts.name)
    if name.split()[0] in ("struct", "union", "enum"):
        return format_type(prog.type(name))
    try:
        t = prog.variable_type(name)
        return f"{declaration(t, name)};\n"
    except KdumpyError:  # not a variable: a type name
        return format_type(prog.type(name))


def mod_python(opts: argparse.Namespace) -> str:
    if opts.load or opts.load_all is not None:
        directory = opts.load_all or None
        wanted = f"if module_file_key(name) == module_file_key({opts.load!r}):\n        " if (
            opts.load) else ""  # fmt: skip
        return api_code(
            ["for_each_module", "module_name"],
            f"""from kdumpy.analysis.helpers.modules import (module_file_key, module_objects,
    module_search_dirs)

# kdumpy reads module symbols from kallsyms and types from BTF: it loads no module DWARF.
# The object files crash's mod -s/-S would load:
found = module_objects(module_search_dirs(prog.info.osrelease or "", {directory!r}))
for mod in for_each_module(prog):
    name = module_name(mod)
    {wanted}print(name, found.get(module_file_key(name), "(not found)"))
""",
        )
    return api_code(
        ["for_each_module", "module_info"],
        """
for info in sorted((module_info(prog, m) for m in for_each_module(prog)),
                   key=lambda info: info.address):
    print(f"{info.address:016x}  {info.name:<22} {info.base:016x} {info.size:>6}")
""",
    )


# Why ``mod -s``/``-S`` cannot do what crash does, in the one line they answer with.
NO_MODULE_DWARF = (
    "kdumpy reads module symbols from the dump's kallsyms and types from its BTF, and "
    "loads no module debuginfo (DWARF)"
)


@command("mod", "module information",
         Arg("-t", dest="taints", action="store_true", help="the modules that taint the kernel"),
         Arg("-s", dest="load", metavar="module",
             help="load a module's debuginfo (from the file given, else searched): not "
                  "possible in kdumpy; says why and which file crash would load"),
         Arg("-S", dest="load_all", nargs="?", const="", default=None, metavar="directory",
             help="load every module's debuginfo (from the directory, else "
                  "/lib/modules/RELEASE and /usr/lib/debug/lib/modules/RELEASE): not possible "
                  "in kdumpy; says why and what it would search"),
         Arg("file", nargs="?", help="with -s: the module's object file"),
         usage="mod [-t | -s module [file] | -S [directory]]", aliases=("lsmod",),
         python=mod_python)  # fmt: skip
def cmd_mod(session: Session, opts: argparse.Namespace) -> str:
    prog = session.prog
    if sum(map(bool, (opts.taints, opts.load, opts.load_all is not None))) > 1:
        raise CommandError("give one of -t, -s, -S")
    if opts.file is not None and not opts.load:
        raise CommandError(f"unexpected argument {opts.file} (a file goes with -s module)")
    if opts.load:
        raise CommandError(_load_one(prog, opts.load, opts.file))
    if opts.load_all is not None:
        raise CommandError(_load_all(prog, opts.load_all or None))
    if opts.taints:
        tainting = [(module_name(m), taint_chars(int(m.taints))) for m in for_each_module(prog)]
        tainting = [(name, letters) for name, letters in tainting if letters]
        if not tainting:
            return "no tainted modules\n"
        width = max(len("NAME"), *(len(shown(name)) for name, _ in tainting))
        return "".join(f"{shown(name):<{width}}  {letters}\n"
                       for name, letters in [("NAME", "TAINTS"), *tainting])  # fmt: skip
    out = ["     MODULE       NAME                         BASE         SIZE  OBJECT FILE\n"]
    infos = sorted(
        (module_info(prog, mod) for mod in for_each_module(prog)), key=lambda i: i.address
    )
    for info in infos:
        out.append(
            f"{info.address:016x}  {shown(info.name):<22} {info.base:016x} {info.size:>6}  "
            "(symbols and types from the dump)\n"
        )
    return "".join(out)


def _load_one(prog: Program, name: str, file: str | None) -> str:
    """``mod -s``'s answer: why kdumpy cannot, and the object file crash would load."""
    loaded = {module_file_key(module_name(m)) for m in for_each_module(prog)}
    if module_file_key(name) not in loaded:
        return f"-s {name}: no such module is loaded"
    if file is not None:
        if not os.path.isfile(file):
            return f"-s {name}: {file}: no such file"
        return f"-s {name}: {NO_MODULE_DWARF}; crash would load {file}"
    dirs = module_search_dirs(prog.info.osrelease or "")
    path = module_objects(dirs).get(module_file_key(name))
    if path is None:
        return f"-s {name}: {NO_MODULE_DWARF}; and no object file for it is under {', '.join(dirs)}"
    return f"-s {name}: {NO_MODULE_DWARF}; crash would load {path}"


def _load_all(prog: Program, directory: str | None) -> str:
    """``mod -S``'s answer: why kdumpy cannot, the directories -S would search and how
    many loaded modules have an object file there."""
    if directory is not None and not os.path.isdir(directory):
        return f"-S: {directory}: no such directory"
    dirs = module_search_dirs(prog.info.osrelease or "", directory)
    found = module_objects(dirs)
    names = sorted(module_name(m) for m in for_each_module(prog))
    have = [n for n in names if module_file_key(n) in found]
    missing = [shown(n) for n in names if module_file_key(n) not in found]
    absent = f" (none for {', '.join(missing)})" if missing else ""
    return (f"-S: {NO_MODULE_DWARF}; -S would search {', '.join(dirs)}: object files for "
            f"{len(have)} of {len(names)} loaded modules{absent}")  # fmt: skip
