"""BTF, the kernel's own compact type information (``CONFIG_DEBUG_INFO_BTF``).

The kernel keeps its BTF in memory between ``__start_BTF`` and ``__stop_BTF``; each
module's BTF is "split" BTF that continues the kernel's type ids and string offsets.
Layout (``include/uapi/linux/btf.h``): a header (magic 0xeb9f, version, flags,
hdr_len, type_off, type_len, str_off, str_len), then ``struct btf_type`` records
(name_off, info = kind<<24 | kind_flag<<31 | vlen, size-or-type) each followed by
kind-specific data, then a NUL-separated string table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kdumpy.analysis.types import (
    VOID,
    ArrayType,
    EnumType,
    FloatType,
    FunctionType,
    IntType,
    Member,
    PointerType,
    StructType,
    Type,
    TypedefType,
)
from kdumpy.errors import DumpFormatError

BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD = range(1, 8)
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO = range(8, 14)
KIND_VAR, KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = range(14, 20)
_QUALIFIERS = (KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

# Bytes of kind-specific data after the 12-byte record: fixed part, per-vlen part.
_EXTRA = {
    KIND_INT: (4, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_DECL_TAG: (4, 0),
    KIND_ENUM64: (0, 12),
}
# Name spaces of C: tags (struct/union/enum) apart from ordinary identifiers.
# Kinds left out of the name index: types are looked up by name, not functions,
# variables (see variables()), sections or tags.
_UNNAMED_KINDS = frozenset({KIND_DATASEC, KIND_DECL_TAG, KIND_FUNC_PROTO, KIND_VAR, KIND_FUNC})
_TAG_KINDS = {KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum", KIND_ENUM64: "enum"}


class Btf:
    """One BTF blob (vmlinux, or a module's split BTF on top of ``base``)."""

    def __init__(self, data: bytes, source: str = "BTF", base: Btf | None = None) -> None:
        self.source = source
        self.base = base
        if len(data) < _HEADER.size:
            raise DumpFormatError(f"{source}: BTF is truncated ({len(data)} bytes)")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(data, 0)
        )
        if magic != BTF_MAGIC:
            raise DumpFormatError(f"{source}: not BTF (magic {magic:#x})")
        if hdr_len + max(type_off + type_len, str_off + str_len) > len(data):
            raise DumpFormatError(f"{source}: BTF sections run past its {len(data)} bytes")
        self._types = memoryview(data)[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])
        self.first_id = base.next_id if base else 1
        self.str_base: int = (base.str_base + len(base._strings)) if base else 0
        self._kinds: list[int] = []
        self._name_offs: list[int] = []
        self._offsets: list[int] = self._scan()
        self._cache: dict[int, Type] = {}
        self._names: dict[tuple[str, str], int] | None = None
        self._enum_values: dict[str, int] | None = None

    @property
    def next_id(self) -> int:
        """The first type id after this blob (where a module's split BTF starts)."""
        return self.first_id + len(self._offsets)

    def _scan(self) -> list[int]:
        """Offsets of every type record (the records have variable length)."""
        offsets = []
        kinds, name_offs = self._kinds, self._name_offs
        data = self._types
        pos, end = 0, len(data)
        unpack = _TYPE.unpack_from
        extra = _EXTRA
        while pos + 12 <= end:
            offsets.append(pos)
            name_off, info, _ = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            kinds.append(kind if kind != KIND_FWD else KIND_FWD | (info >> 31) << 5)
            name_offs.append(name_off)
            fixed, per = extra.get(kind, (0, 0))
            pos += 12 + fixed + per * (info & 0xFFFF)
        if pos != end:
            raise DumpFormatError(f"{self.source}: BTF type section is truncated")
        return offsets

    # -- raw records ----------------------------------------------------------------------
    def string(self, offset: int) -> str:
        if offset < self.str_base:
            return self.base.string(offset) if self.base else ""
        offset -= self.str_base
        end = self._strings.find(b"\0", offset)
        return self._strings[offset : end if end >= 0 else None].decode("ascii", "replace")

    def _owner(self, type_id: int) -> Btf:
        if type_id < self.first_id and self.base is not None:
            return self.base._owner(type_id)
        return self

    def record(self, type_id: int) -> tuple[int, int, int, int, int]:
        """``(kind, kind_flag, vlen, name_off, size_or_type)`` and data offset of a type."""
        btf = self._owner(type_id)
        pos = btf._offsets[type_id - btf.first_id]
        name_off, info, size_type = _TYPE.unpack_from(btf._types, pos)
        return (info >> 24) & 0x1F, info >> 31, info & 0xFFFF, name_off, size_type

    def _extra(self, type_id: int) -> tuple[memoryview, int]:
        btf = self._owner(type_id)
        return btf._types, btf._offsets[type_id - btf.first_id] + 12

    def kind(self, type_id: int) -> int:
        return 0 if type_id == 0 else self.record(type_id)[0]

    def name(self, type_id: int) -> str:
        return "" if type_id == 0 else self.string(self.record(type_id)[3])

    def ids(self) -> range:
        """Type ids of this blob (not of its base)."""
        return range(self.first_id, self.next_id)

    # -- name lookups ---------------------------------------------------------------------
    def _name_index(self) -> dict[tuple[str, str], int]:
        if self._names is None:
            names: dict[tuple[str, str], int] = {}
            strings = self._strings
            find = strings.find
            base = self.str_base
            for index, (kind, name_off) in enumerate(
                zip(self._kinds, self._name_offs, strict=True)
            ):
                if not name_off or kind in _UNNAMED_KINDS:
                    continue
                if kind & ~0x1F:  # forward declaration; bit 5 = union
                    space = "union" if kind & 0x20 else "struct"
                else:
                    space = _TAG_KINDS.get(kind, "")
                off = name_off - base
                if off < 0:
                    continue
                key = (space, strings[off : find(b"\0", off)].decode("ascii", "replace"))
                # A full definition wins over a forward declaration seen first.
                old = names.get(key)
                if old is None or self._kinds[old - self.first_id] & ~0x1F:
                    names[key] = self.first_id + index
            self._names = names
        return self._names

    def lookup(self, name: str, space: str = "") -> int | None:
        """Type id of ``name`` in a C name space ("struct", "union", "enum" or "" for
        typedefs, base types, functions and variables); own blob first, then base."""
        found = self._name_index().get((space, name))
        if found is None and self.base is not None:
            return self.base.lookup(name, space)
        return found

    # -- building Type objects -------------------------------------------------------------
    def type(self, type_id: int) -> Type:
        """The :class:`Type` of an id, qualifiers stripped; 0 is void."""
        if type_id == 0:
            return VOID
        owner = self._owner(type_id)
        if owner is not self:
            return owner.type(type_id)
        cached = self._cache.get(type_id)
        if cached is None:
            cached = self._build(type_id)
            self._cache[type_id] = cached
        return cached

    def _lazy(self, type_id: int) -> Callable[[], Type]:
        return lambda: self.type(type_id)

    def _build(self, type_id: int) -> Type:
        kind, kflag, vlen, name_off, size_type = self.record(type_id)
        name = self.string(name_off)
        data, pos = self._extra(type_id)
        if kind in _QUALIFIERS or kind == KIND_VAR:
            return self.type(size_type)
        if kind == KIND_INT:
            enc = struct.unpack_from("<I", data, pos)[0] >> 24
            return IntType(name, size_type, bool(enc & 1), bool(enc & 4))
        if kind == KIND_PTR:
            return PointerType(self._lazy(size_type))
        if kind == KIND_ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", data, pos)
            return ArrayType(self._lazy(elem), nelems)
        if kind in (KIND_STRUCT, KIND_UNION):
            return StructType(
                "struct" if kind == KIND_STRUCT else "union",
                name,
                size_type,
                lambda: self._members(type_id),
            )
        if kind == KIND_FWD:
            return StructType("union" if kflag else "struct", name, 0, None)
        if kind in (KIND_ENUM, KIND_ENUM64):
            return EnumType(name, size_type, bool(kflag), self._enumerators(type_id))
        if kind == KIND_TYPEDEF:
            return TypedefType(name, self._lazy(size_type))
        if kind == KIND_FUNC:
            proto = self.type(size_type)
            if isinstance(proto, FunctionType):
                return FunctionType(name, lambda: proto.ret, proto.params)
            return proto
        if kind == KIND_FUNC_PROTO:
            params = []
            for i in range(vlen):
                p_name, p_type = struct.unpack_from("<II", data, pos + 8 * i)
                params.append(self.string(p_name) if p_type else "...")
            return FunctionType(name, self._lazy(size_type), params)
        if kind == KIND_FLOAT:
            return FloatType(name, size_type)
        return VOID

    def _members(self, type_id: int) -> list[Member]:
        _kind, kflag, vlen, _name, _size = self.record(type_id)
        data, pos = self._extra(type_id)
        members = []
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", data, pos + 12 * i)
            bit_size = 0
            if kflag:
                bit_size, m_off = m_off >> 24, m_off & 0xFFFFFF
            members.append(Member(self.string(m_name), self._lazy(m_type), m_off, bit_size))
        return members

    def _enumerators(self, type_id: int) -> list[tuple[str, int]]:
        kind, kflag, vlen, _name, _size = self.record(type_id)
        data, pos = self._extra(type_id)
        out = []
        for i in range(vlen):
            if kind == KIND_ENUM:
                e_name, value = struct.unpack_from("<Ii" if kflag else "<II", data, pos + 8 * i)
            else:
                e_name, lo, hi = struct.unpack_from("<III", data, pos + 12 * i)
                value = lo | hi << 32
                if kflag and value >> 63:
                    value -= 1 << 64
            out.append((self.string(e_name), value))
        return out

    def variables(self) -> dict[str, int]:
        """``name -> type id`` of the variables this BTF declares (kernel BTF: per-CPU
        variables only)."""
        out = {}
        for index, kind in enumerate(self._kinds):
            if kind == KIND_VAR:
                out[self.string(self._name_offs[index])] = self.first_id + index
        return out

    def enumerator(self, name: str) -> int | None:
        """Value of an enumeration constant (e.g. ``PIDTYPE_PID``) anywhere in the BTF."""
        if self._enum_values is None:
            values: dict[str, int] = {}
            for index, kind in enumerate(self._kinds):
                if kind in (KIND_ENUM, KIND_ENUM64):
                    for n, v in self._enumerators(self.first_id + index):
                        values.setdefault(n, v)
            self._enum_values = values
        found = self._enum_values.get(name)
        if found is None and self.base is not None:
            return self.base.enumerator(name)
        return found
