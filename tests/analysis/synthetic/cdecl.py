"""C declarations -> struct layouts and a BTF blob, for a kernel built by a test.

A small subset of C is enough to declare what the analysis helpers read: ``struct``
and ``union`` definitions (members, arrays, pointers, anonymous members), ``enum``
with values, ``typedef``.  Layouts follow the x86_64 ABI (natural alignment); the BTF
is written the way pahole writes it (``include/uapi/linux/btf.h``): a 24-byte header,
``struct btf_type`` records, a string table.  The layouts are the oracle the BTF reader
is checked against, so nothing here imports kdumpy.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

# BTF kinds and the int encoding bits.
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VAR, KIND_DATASEC = 8, 14, 15
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4

# C spellings -> the names pahole gives base types, with (size, signed, bool).
BASE_TYPES = {
    "char": ("char", 1, True),
    "signed char": ("signed char", 1, True),
    "unsigned char": ("unsigned char", 1, False),
    "short": ("short int", 2, True),
    "unsigned short": ("short unsigned int", 2, False),
    "int": ("int", 4, True),
    "unsigned int": ("unsigned int", 4, False),
    "unsigned": ("unsigned int", 4, False),
    "long": ("long int", 8, True),
    "unsigned long": ("long unsigned int", 8, False),
    "long long": ("long long int", 8, True),
    "unsigned long long": ("long long unsigned int", 8, False),
    "_Bool": ("_Bool", 1, False),
}
_TOKEN = re.compile(r"\s*(?:(/\*.*?\*/)|([A-Za-z_]\w*|\d+|0x[0-9a-fA-F]+|[{}();,\[\]*=-]))", re.S)


@dataclass
class CType:
    """A type with its layout: ``kind`` is base/ptr/array/struct/union/enum/typedef/void."""

    kind: str
    name: str = ""
    size: int = 0
    align: int = 1
    target: CType | None = None  # ptr, array element, typedef
    length: int = 0  # array
    signed: bool = False
    members: list[tuple[str, CType, int]] = field(default_factory=list)  # (name, type, offset)
    values: list[tuple[str, int]] = field(default_factory=list)  # enum
    complete: bool = True
    btf_id: int = 0

    def strip(self) -> CType:
        t = self
        while t.kind == "typedef" and t.target is not None:
            t = t.target
        return t

    def member(self, name: str) -> tuple[CType, int]:
        """``(type, byte offset)`` of a member, looking into anonymous members."""
        for m_name, m_type, m_off in self.strip().members:
            if m_name == name:
                return m_type, m_off
            if not m_name:
                try:
                    inner, off = m_type.member(name)
                except KeyError:
                    continue
                return inner, m_off + off
        raise KeyError(f"{self.kind} {self.name} has no member {name}")


class TypeSystem:
    """Types parsed from declarations, laid out, and encodable as BTF."""

    def __init__(self) -> None:
        self.void = CType("void")
        self.base: dict[str, CType] = {}
        self.tags: dict[tuple[str, str], CType] = {}  # ("struct", name) -> type
        self.typedefs: dict[str, CType] = {}

    # -- parsing ---------------------------------------------------------------------------
    def declare(self, text: str) -> None:
        """Parse C declarations (several, separated by ``;``) and lay them out."""
        tokens = [m[2] for m in _TOKEN.finditer(text) if m[2]]
        pos = 0
        while pos < len(tokens):
            pos = self._declaration(tokens, pos)

    def _declaration(self, toks: list[str], pos: int) -> int:
        if toks[pos] == "typedef":
            t, pos = self._specifier(toks, pos + 1)
            while True:
                decl_t, name, pos = self._declarator(toks, pos, t)
                self.typedefs[name] = CType("typedef", name, decl_t.size, decl_t.align, decl_t)
                if toks[pos] != ",":
                    break
                pos += 1
            return self._expect(toks, pos, ";")
        _t, pos = self._specifier(toks, pos)
        return self._expect(toks, pos, ";")

    @staticmethod
    def _expect(toks: list[str], pos: int, tok: str) -> int:
        if toks[pos] != tok:
            raise SyntaxError(f"expected {tok!r} at {' '.join(toks[pos : pos + 6])!r}")
        return pos + 1

    def _specifier(self, toks: list[str], pos: int) -> tuple[CType, int]:
        while toks[pos] in ("const", "volatile"):
            pos += 1
        word = toks[pos]
        if word in ("struct", "union", "enum"):
            name = toks[pos + 1] if toks[pos + 1] != "{" else ""
            pos += 2 if name else 1
            if toks[pos] == "{":
                return self._body(word, name, toks, pos + 1)
            return self.tag(word, name), pos
        if word == "void":
            return self.void, pos + 1
        words = []
        while toks[pos] in ("unsigned", "signed", "long", "short", "int", "char", "_Bool"):
            words.append(toks[pos])
            pos += 1
        if words:
            # "unsigned long int" is "unsigned long"; a lone "signed" is "int".
            spelled = " ".join(w for w in words if w != "int" or words == ["int"])
            return self.base_type("int" if spelled == "signed" else spelled), pos
        if word in self.typedefs:
            return self.typedefs[word], pos + 1
        raise SyntaxError(f"unknown type {word!r}")

    def _declarator(self, toks: list[str], pos: int, t: CType) -> tuple[CType, str, int]:
        while toks[pos] == "*":
            t = self.pointer(t)
            pos += 1
        while toks[pos] in ("const", "volatile"):
            pos += 1
        name = toks[pos]
        pos += 1
        dims = []
        while toks[pos] == "[":
            dims.append(int(toks[pos + 1], 0))
            pos = self._expect(toks, pos + 2, "]")
        for n in reversed(dims):
            t = self.array(t, n)
        return t, name, pos

    def _body(self, kind: str, name: str, toks: list[str], pos: int) -> tuple[CType, int]:
        t = self.tag(kind, name) if name else CType(kind, "", complete=False)
        if kind == "enum":
            value = -1
            while toks[pos] != "}":
                e_name = toks[pos]
                pos += 1
                if toks[pos] == "=":
                    neg = toks[pos + 1] == "-"
                    pos += 1 + neg
                    value = -int(toks[pos], 0) if neg else int(toks[pos], 0)
                    pos += 1
                else:
                    value += 1
                t.values.append((e_name, value))
                if toks[pos] == ",":
                    pos += 1
            t.size = t.align = 4
            t.signed = any(v < 0 for _, v in t.values)
            t.complete = True
            return t, pos + 1
        members: list[tuple[str, CType]] = []
        while toks[pos] != "}":
            m_type, pos = self._specifier(toks, pos)
            if toks[pos] == ";":  # anonymous struct/union member
                members.append(("", m_type))
            else:
                while True:
                    decl_t, m_name, pos = self._declarator(toks, pos, m_type)
                    members.append((m_name, decl_t))
                    if toks[pos] != ",":
                        break
                    pos += 1
            pos = self._expect(toks, pos, ";")
        self._lay_out(t, members)
        return t, pos + 1

    def _lay_out(self, t: CType, members: list[tuple[str, CType]]) -> None:
        offset = size = 0
        align = 1
        for m_name, m_type in members:
            s = m_type.strip()
            if not s.complete and s.kind in ("struct", "union"):
                raise SyntaxError(f"{t.kind} {t.name}: member {m_name} of incomplete type")
            if t.kind == "union":
                t.members.append((m_name, m_type, 0))
                size = max(size, m_type.size)
            else:
                offset = (offset + m_type.align - 1) & -m_type.align
                t.members.append((m_name, m_type, offset))
                offset += m_type.size
                size = offset
            align = max(align, m_type.align)
        t.align = align
        t.size = (size + align - 1) & -align
        t.complete = True

    # -- type constructors ----------------------------------------------------------------
    def base_type(self, spelled: str) -> CType:
        name, size, signed = BASE_TYPES[spelled]
        if name not in self.base:
            self.base[name] = CType("base", name, size, size, signed=signed)
        return self.base[name]

    def tag(self, kind: str, name: str) -> CType:
        key = (kind, name)
        if key not in self.tags:
            self.tags[key] = CType(kind, name, complete=False)
        return self.tags[key]

    @staticmethod
    def pointer(target: CType) -> CType:
        return CType("ptr", "", 8, 8, target)

    @staticmethod
    def array(elem: CType, n: int) -> CType:
        return CType("array", "", elem.size * n, elem.align, elem, n)

    def lookup(self, spec: str) -> CType:
        """A type by its C spelling: ``struct task_struct``, ``unsigned long``, ``pid_t``,
        with trailing ``*`` or ``[N]``."""
        m = re.fullmatch(r"\s*([\w ]+?)\s*(\**)\s*(?:\[(\d+)\])?\s*", spec)
        if m is None:
            raise KeyError(spec)
        base, stars, length = m.groups()
        kind, _, name = base.partition(" ")
        if kind in ("struct", "union", "enum"):
            t = self.tags[(kind, name)]
        elif base in self.typedefs:
            t = self.typedefs[base]
        elif base == "void":
            t = self.void
        else:
            t = self.base_type(base)
        for _ in stars:
            t = self.pointer(t)
        return self.array(t, int(length)) if length else t

    def path(self, t: CType, path: str) -> tuple[CType, int]:
        """``(type, byte offset)`` of a member path like ``se.run_node.rb_left`` or
        ``rss_stat[1].count`` within ``t``."""
        offset = 0
        for part in re.findall(r"[A-Za-z_]\w*|\[\d+\]", path):
            s = t.strip()
            if part.startswith("["):
                assert s.kind == "array" and s.target is not None, f"{path}: not an array"
                t = s.target
                offset += int(part[1:-1]) * t.size
            else:
                t, off = s.member(part)
                offset += off
        return t, offset

    # -- BTF --------------------------------------------------------------------------------
    def btf(self, percpu_vars: dict[str, str] | None = None) -> bytes:
        """Every declared type (and per-CPU variables ``name -> type spelling``) as BTF."""
        enc = _BtfEncoder()
        for t in [*self.base.values(), *self.tags.values(), *self.typedefs.values()]:
            enc.type_id(t)
        if percpu_vars:
            entries = []
            for i, (name, spec) in enumerate(percpu_vars.items()):
                t = self.lookup(spec)
                entries.append((enc.var(name, enc.type_id(t)), 64 * i, t.size))
            enc.datasec(".data..percpu", entries)
        return enc.finish()


class _BtfEncoder:
    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.strings = bytearray(b"\0")
        self._str_at: dict[str, int] = {"": 0}
        self._ids: dict[int, int] = {}

    def string(self, s: str) -> int:
        if s not in self._str_at:
            self._str_at[s] = len(self.strings)
            self.strings += s.encode() + b"\0"
        return self._str_at[s]

    def _new(self) -> int:
        self.records.append(b"")
        return len(self.records)

    @staticmethod
    def _head(name_off: int, kind: int, vlen: int, size_type: int, kflag: int = 0) -> bytes:
        return struct.pack("<III", name_off, kflag << 31 | kind << 24 | vlen, size_type)

    def type_id(self, t: CType) -> int:
        """The BTF id of ``t`` (0 for void), encoding it and what it refers to first."""
        if t.kind == "void":
            return 0
        if id(t) in self._ids:
            return self._ids[id(t)]
        tid = self._new()
        self._ids[id(t)] = tid
        t.btf_id = tid
        name = self.string(t.name)
        if t.kind == "base":
            enc = (INT_SIGNED if t.signed else 0) | (INT_BOOL if t.name == "_Bool" else 0)
            enc |= INT_CHAR if t.name == "char" else 0
            rec = self._head(name, KIND_INT, 0, t.size) + struct.pack("<I", enc << 24 | 8 * t.size)
        elif t.kind == "ptr":
            assert t.target is not None
            rec = self._head(0, KIND_PTR, 0, self.type_id(t.target))
        elif t.kind == "typedef":
            assert t.target is not None
            rec = self._head(name, KIND_TYPEDEF, 0, self.type_id(t.target))
        elif t.kind == "array":
            assert t.target is not None
            index = self.type_id_of_index()
            rec = self._head(0, KIND_ARRAY, 0, 0)
            rec += struct.pack("<III", self.type_id(t.target), index, t.length)
        elif t.kind == "enum":
            rec = self._head(name, KIND_ENUM, len(t.values), 4, int(t.signed))
            for e_name, value in t.values:
                rec += struct.pack("<Ii", self.string(e_name), value)
        elif not t.complete:  # forward declaration
            rec = self._head(name, 7, 0, 0, int(t.kind == "union"))
        else:
            kind = KIND_STRUCT if t.kind == "struct" else KIND_UNION
            rec = self._head(name, kind, len(t.members), t.size)
            for m_name, m_type, m_off in t.members:
                rec += struct.pack("<III", self.string(m_name), self.type_id(m_type), 8 * m_off)
        self.records[tid - 1] = rec
        return tid

    def type_id_of_index(self) -> int:
        key = -1
        if key not in self._ids:
            tid = self._new()
            self._ids[key] = tid
            rec = self._head(self.string("__ARRAY_SIZE_TYPE__"), KIND_INT, 0, 4)
            self.records[tid - 1] = rec + struct.pack("<I", 32)
        return self._ids[key]

    def var(self, name: str, type_id: int) -> int:
        tid = self._new()
        self.records[tid - 1] = self._head(self.string(name), KIND_VAR, 0, type_id) + struct.pack(
            "<I", 1
        )
        return tid

    def datasec(self, name: str, entries: list[tuple[int, int, int]]) -> int:
        tid = self._new()
        size = max((off + sz for _, off, sz in entries), default=0)
        rec = self._head(self.string(name), KIND_DATASEC, len(entries), size)
        for var_id, off, sz in entries:
            rec += struct.pack("<III", var_id, off, sz)
        self.records[tid - 1] = rec
        return tid

    def finish(self) -> bytes:
        types = b"".join(self.records)
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strings)
        )
        return header + types + bytes(self.strings)
