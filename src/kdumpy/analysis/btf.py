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
import zlib
from bisect import bisect_right
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
from kdumpy.tables import btf_records, name_hashes, u32_matches, u32s

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
# The same in 4-byte words, record included, indexed by kind (all BTF data is words):
# what the record walk (kdumpy.tables) steps by.
_FIXED_WORDS = bytes(3 + _EXTRA.get(k, (0, 0))[0] // 4 for k in range(32))
_PER_WORDS = bytes(_EXTRA.get(k, (0, 0))[1] // 4 for k in range(32))
# Name spaces of C: tags (struct/union/enum) apart from ordinary identifiers.
# Kinds types are not looked up by: functions, variables (see variable()), sections, tags.
_UNNAMED_KINDS = frozenset({KIND_DATASEC, KIND_DECL_TAG, KIND_FUNC_PROTO, KIND_VAR, KIND_FUNC})
_TAG_KINDS = {KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum", KIND_ENUM64: "enum"}


class Btf:
    """One BTF blob (vmlinux, or a module's split BTF on top of ``base``).

    Opening it walks its records once (their offsets, name offsets and info words, in C
    when kdumpy._tables is built).  Names are not indexed: the first lookup hashes
    every record's name (crc32, in C too), and a lookup compares the names of the
    records whose hash is the name's."""

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
        try:
            offsets, name_offs, infos = btf_records(self._types, _FIXED_WORDS, _PER_WORDS)
        except ValueError as exc:
            raise DumpFormatError(f"{source}: {exc}") from None
        # Per record (index = id - first_id): byte offset, name offset, info word.
        self._offsets = u32s(offsets)
        self._name_offs = u32s(name_offs)
        self._name_offs_raw = name_offs  # little-endian uint32 bytes
        self._infos = u32s(infos)
        self._hashes: bytes | None = None  # crc32 of each record's name, on first lookup
        self._cache: dict[int, Type] = {}
        self._found: dict[tuple[str, str], int | None] = {}
        self._enum_values: dict[str, int | None] = {}

    @property
    def next_id(self) -> int:
        """The first type id after this blob (where a module's split BTF starts)."""
        return self.first_id + len(self._offsets)

    def _name_offsets(self, name: str) -> list[int]:
        """Every ``name_off`` value that names ``name`` in this blob's string table: where
        it stands NUL-terminated, a whole string or the end of a longer one."""
        key = _key(name)
        if key is None:
            return []
        found: list[int] = []
        at = self._strings.find(key + b"\0")
        while at >= 0:
            found.append(at + self.str_base)
            at = self._strings.find(key + b"\0", at + 1)
        return found

    def _raw_name(self, i: int) -> bytes | None:
        """The name bytes of record ``i`` (id - first_id), if in this blob's strings."""
        at = self._name_offs[i] - self.str_base
        if not 0 <= at < len(self._strings):
            return None
        end = self._strings.find(b"\0", at)
        return self._strings[at : end if end >= 0 else None]

    def _named(self, name: str) -> list[int]:
        """Indices (id - first_id) of this blob's records called ``name``, in order."""
        key = _key(name)
        if key is None:
            return []
        if self._hashes is None:
            self._hashes = name_hashes(self._strings, self._name_offs_raw, self.str_base)
        same = u32_matches(self._hashes, [zlib.crc32(key)])
        return [i for i in same if self._raw_name(i) == key]

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
        if not btf.first_id <= type_id < btf.next_id:
            raise DumpFormatError(f"{self.source}: no BTF type id {type_id}")
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
    def lookup(self, name: str, space: str = "") -> int | None:
        """Type id of ``name`` in a C name space ("struct", "union", "enum" or "" for
        typedefs, base types, functions and variables); own blob first, then base."""
        if (space, name) in self._found:
            found = self._found[space, name]
        else:
            found = self._found[space, name] = self._find(name, space)
        if found is None and self.base is not None:
            return self.base.lookup(name, space)
        return found

    def _find(self, name: str, space: str) -> int | None:
        """A full definition wins over a forward declaration, the first definition over
        later ones, and the last forward declaration over earlier ones."""
        definition = declaration = None
        for i in self._named(name):
            info = self._infos[i]
            kind = info >> 24 & 0x1F
            if kind in _UNNAMED_KINDS:
                continue
            if kind == KIND_FWD:
                if space == ("union" if info >> 31 else "struct"):
                    declaration = i
            elif space == _TAG_KINDS.get(kind, "") and definition is None:
                definition = i
        found = definition if definition is not None else declaration
        return None if found is None else found + self.first_id

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

    def variable(self, name: str) -> int | None:
        """Type id of the variable ``name`` declares (kernel BTF: per-CPU variables only;
        the last of a name), or None."""
        found = [i for i in self._named(name) if self._infos[i] >> 24 & 0x1F == KIND_VAR]
        return found[-1] + self.first_id if found else None

    def enumerator(self, name: str) -> int | None:
        """Value of an enumeration constant (e.g. ``PIDTYPE_PID``) anywhere in the BTF:
        the first of a name, in type order."""
        if name not in self._enum_values:
            self._enum_values[name] = self._find_enumerator(name)
        found = self._enum_values[name]
        if found is None and self.base is not None:
            return self.base.enumerator(name)
        return found

    def _find_enumerator(self, name: str) -> int | None:
        """The words of the type section naming ``name`` that are an enumerator's name:
        inside an enum record's entries, on an entry's first word."""
        for word in u32_matches(self._types, self._name_offsets(name)):
            pos = 4 * word
            i = bisect_right(self._offsets, pos) - 1
            if i < 0:
                continue
            info = self._infos[i]
            kind, kflag, vlen = info >> 24 & 0x1F, info >> 31, info & 0xFFFF
            width = 8 if kind == KIND_ENUM else 12 if kind == KIND_ENUM64 else 0
            within = pos - self._offsets[i] - 12
            if not width or within < 0 or within % width or within // width >= vlen:
                continue
            if kind == KIND_ENUM:
                return int(struct.unpack_from("<i" if kflag else "<I", self._types, pos + 4)[0])
            lo, hi = struct.unpack_from("<II", self._types, pos + 4)
            value = lo | hi << 32
            return value - (1 << 64) if kflag and value >> 63 else value
        return None


def _key(name: str) -> bytes | None:
    """A name as the string table holds it (None if no string can be it)."""
    try:
        key = name.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return key if key and b"\0" not in key else None
