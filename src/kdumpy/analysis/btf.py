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
import sys
from collections.abc import Callable

import numpy as np

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
# The same in 4-byte words, record included, indexed by kind (all BTF data is words).
_FIXED_WORDS = [3 + _EXTRA.get(k, (0, 0))[0] // 4 for k in range(32)]
_PER_WORDS = [_EXTRA.get(k, (0, 0))[1] // 4 for k in range(32)]
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
        self._offsets: list[int] = self._scan()
        # Per type (index = id - first_id): kind (forward declarations of unions get
        # bit 5) and name offset, as numpy arrays for the vectorised indexes below.
        words = np.frombuffer(self._types[: len(self._types) & ~3], dtype="<u4")
        at = np.array(self._offsets, dtype=np.int64) // 4
        info = words[at + 1] if len(at) else np.zeros(0, dtype=np.uint32)
        kinds = ((info >> 24) & 0x1F).astype(np.int32)
        fwd = kinds == KIND_FWD
        kinds[fwd] |= ((info[fwd] >> 31) << 5).astype(np.int32)
        self._kinds = kinds
        self._name_offs = words[at] if len(at) else np.zeros(0, dtype=np.uint32)
        self._words = words
        self._word_at = at
        self._cache: dict[int, Type] = {}
        self._names: dict[tuple[str, str], int] | None = None
        self._enum_values: dict[str, int] | None = None
        self._string_index: tuple[list[str], np.ndarray] | None = None

    @property
    def next_id(self) -> int:
        """The first type id after this blob (where a module's split BTF starts)."""
        return self.first_id + len(self._offsets)

    def _scan(self) -> list[int]:
        """Byte offsets of every type record.  Records have variable length, so this
        is one walk; it reads whole words (no struct unpacking) to stay cheap for the
        ~100k records of a kernel."""
        data = self._types
        if len(data) % 4:
            raise DumpFormatError(f"{self.source}: BTF type section is not whole words")
        if sys.byteorder == "little":
            words: memoryview | list[int] = data.cast("B").cast("I")
        else:
            words = np.frombuffer(data, dtype="<u4").tolist()
        fixed, per = _FIXED_WORDS, _PER_WORDS
        offsets: list[int] = []
        append = offsets.append
        # A record's length follows from its info word alone, and a kernel's ~100k
        # records have a few thousand distinct ones: a dict of lengths by info word
        # is a third faster than the arithmetic per record.
        lengths: dict[int, int] = {}
        known = lengths.get
        pos, end = 0, len(words)
        try:
            while pos < end:
                append(pos * 4)
                info = words[pos + 1]
                step = known(info)
                if step is None:
                    kind = (info >> 24) & 0x1F
                    step = lengths[info] = fixed[kind] + per[kind] * (info & 0xFFFF)
                pos += step
        except IndexError:
            pos = end + 1
        if pos != end:
            raise DumpFormatError(f"{self.source}: BTF type section is truncated")
        return offsets

    def _strings_at(self, offsets: np.ndarray) -> list[str]:
        """The strings at many offsets of this blob's string table, at once: the table
        is split once, and offsets that fall inside a string (shared suffixes) are
        decoded one by one."""
        if self._string_index is None:
            pieces = self._strings.decode("latin-1").split("\0")
            lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
            starts = np.cumsum(lengths + 1) - (lengths + 1)
            self._string_index = (pieces, starts)
        pieces, starts = self._string_index
        offsets = offsets.astype(np.int64)
        where = np.searchsorted(starts, offsets, side="right") - 1
        out = [pieces[i] for i in where.tolist()]
        for j in np.nonzero(starts[where] != offsets)[0].tolist():
            out[j] = self.string(int(offsets[j]) + self.str_base)
        return out

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
    def _name_index(self) -> dict[tuple[str, str], int]:
        if self._names is None:
            kinds = self._kinds
            offs = self._name_offs.astype(np.int64) - self.str_base
            named = (self._name_offs != 0) & (offs >= 0) & ~np.isin(kinds, list(_UNNAMED_KINDS))
            index = np.nonzero(named)[0]
            names = self._strings_at(offs[index])
            space_of = ["" for _ in range(64)]
            for kind, space in _TAG_KINDS.items():
                space_of[kind] = space
            space_of[KIND_FWD] = "struct"
            space_of[KIND_FWD | 0x20] = "union"
            spaces = [space_of[k] for k in kinds[index].tolist()]
            ids = (index + self.first_id).tolist()
            # A full definition wins over a forward declaration, and the first
            # definition over later ones: the dict keeps the last of equal keys.
            is_fwd = (kinds[index] & 0x1F) == KIND_FWD
            order = np.concatenate([np.nonzero(is_fwd)[0], np.nonzero(~is_fwd)[0][::-1]])
            keys = list(zip(spaces, names, strict=True))
            picked = order.tolist()
            self._names = dict(
                zip(map(keys.__getitem__, picked), map(ids.__getitem__, picked), strict=True)
            )
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
        index = np.nonzero(self._kinds == KIND_VAR)[0]
        names = self._strings_at(self._name_offs[index].astype(np.int64) - self.str_base)
        return dict(zip(names, (index + self.first_id).tolist(), strict=True))

    def enumerator(self, name: str) -> int | None:
        """Value of an enumeration constant (e.g. ``PIDTYPE_PID``) anywhere in the BTF."""
        if self._enum_values is None:
            self._enum_values = self._all_enumerators()
        found = self._enum_values.get(name)
        if found is None and self.base is not None:
            return self.base.enumerator(name)
        return found

    def _all_enumerators(self) -> dict[str, int]:
        """Every enumerator of this blob, gathered with numpy (the first one of a name
        wins, in type order)."""
        words = self._words
        names: list[str] = []
        values: list[int] = []
        where: list[np.ndarray] = []
        for kind, width in ((KIND_ENUM, 2), (KIND_ENUM64, 3)):
            index = np.nonzero(self._kinds == kind)[0]
            at = self._word_at[index]
            info = words[at + 1]
            vlen = (info & 0xFFFF).astype(np.int64)
            signed = np.repeat((info >> 31) != 0, vlen)
            # Word offset of each enumerator: its enum's first entry + width * j.
            first = np.repeat(at + 3, vlen)
            within = np.arange(int(vlen.sum())) - np.repeat(np.cumsum(vlen) - vlen, vlen)
            entry = first + width * within
            names += self._strings_at(words[entry].astype(np.int64) - self.str_base)
            if kind == KIND_ENUM:
                raw = words[entry + 1].astype(np.int64)
                values += np.where(signed & (raw >= 1 << 31), raw - (1 << 32), raw).tolist()
            else:
                lo = words[entry + 1].astype(object)
                hi = words[entry + 2].astype(object)
                values += [
                    v - (1 << 64) if s and v >> 63 else v
                    for v, s in zip((lo | hi << 32).tolist(), signed.tolist(), strict=True)
                ]
            where.append(entry)
        # Type order, and the first of equal names kept: the dict keeps the last.
        order = np.argsort(np.concatenate(where), kind="stable")[::-1].tolist()
        out = dict(zip(map(names.__getitem__, order), map(values.__getitem__, order), strict=True))
        return out
