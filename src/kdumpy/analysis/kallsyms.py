"""The crashed kernel's own symbol table (kallsyms), located through VMCOREINFO.

Linux >= 6.0 exports the addresses of its compressed kallsyms tables in VMCOREINFO
(``SYMBOL(kallsyms_names)``, ``_num_syms``, ``_token_table``, ``_token_index``,
``_offsets``, ``_relative_base``).  Names are token-compressed: each entry is a length
(one byte, two when the high bit is set, Linux >= 6.1) followed by that many token
indices; ``token_table[token_index[i]]`` is a NUL-terminated piece of text; the
first character of the expanded name is the ``nm``-style type (T, t, D, b, ...).

Addresses are 32-bit entries of ``kallsyms_offsets``; kernels have used three
encodings over time, so the one that reproduces ``SYMBOL(_stext)`` is chosen, as
makedumpfile does.

Opening a dump decodes no names: types and addresses are vectorised, names are
expanded when asked for, and name lookups binary-search ``kallsyms_seqs_of_names``
when the kernel has it (found by its place after other tables, and checked).
"""

from __future__ import annotations

import array
import struct
import zlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from functools import cached_property

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.tables import (
    ENCODINGS,
    U32Array,
    kallsyms_addresses,
    kallsyms_expand,
    kallsyms_walk,
    le_array,
    name_hashes,
    seqs_check,
    u32_matches,
    u32s,
)
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

ReadFn = Callable[[int, int], bytes]

# Sanity bound: a kernel has a few hundred thousand symbols at most.
_MAX_SYMS = 2_000_000
_U64 = (1 << 64) - 1


def entry_starts(names: bytes, count: int, long_lengths: bool = True) -> tuple[bytes, int]:
    """Offset of each entry's length prefix (little-endian uint32 bytes: :func:`u32s`
    reads them), and where the last entry ends.  The entries form a chain (each length
    says where the next begins): one walk, in C when kdumpy._tables is built.
    ``long_lengths``: a length byte with its top bit set is followed by a second one
    (Linux >= 6.1).  An entry without a token is corrupt."""
    try:
        starts, end, nonempty = kallsyms_walk(names, count, long_lengths)
    except ValueError as exc:
        raise DumpFormatError(str(exc)) from None
    if not nonempty:
        raise DumpFormatError("kallsyms_names has an empty entry (corrupt)")
    return starts, end


class Encoding:
    """One way kernels have stored symbol addresses: from 32-bit ``kallsyms_offsets``
    entries, ``relative`` to ``kallsyms_relative_base``, ``absolute-percpu`` (negative:
    relative, below the base), ``place-relative`` (to the entry's own address); or
    ``absolute`` 64-bit addresses."""

    def __init__(self, name: str, raw: bytes, base: int | None = None, table: int = 0) -> None:
        self.name, self.base, self.table = name, base or 0, table
        self._raw = raw
        self._values: Sequence[int] = (
            u32s(raw) if name == "relative" else le_array("Q" if name == "absolute" else "i", raw)
        )

    def __len__(self) -> int:
        return len(self._values)

    def address(self, i: int) -> int:
        """The address of entry ``i`` alone (to choose an encoding cheaply)."""
        v = self._values[i]
        if self.name == "relative":
            return (self.base + v) & _U64
        if self.name == "absolute-percpu":
            return v if v >= 0 else (self.base - 1 - v) & _U64
        if self.name == "place-relative":
            return (self.table + 4 * i + v) & _U64
        return v

    def addresses(self) -> array.array:
        """Every address (uint64), in C when kdumpy._tables is built."""
        if self.name == "absolute":
            return array.array("Q", self._values)
        return le_array(
            "Q", kallsyms_addresses(self._raw, ENCODINGS.index(self.name), self.base, self.table)
        )


def candidate_addresses(offsets: bytes, base: int | None, table_addr: int) -> dict[str, Encoding]:
    """Every encoding of 32-bit offsets kernels have used."""
    candidates: dict[str, Encoding] = {}
    if base is not None:
        candidates["relative"] = Encoding("relative", offsets, base)
        candidates["absolute-percpu"] = Encoding("absolute-percpu", offsets, base)
    candidates["place-relative"] = Encoding("place-relative", offsets, None, table_addr)
    return candidates


class Kallsyms:
    """vmlinux symbols in kallsyms order (sorted by address): ``addresses`` (uint64
    array) up front; names and nm types decoded one at a time on demand (:meth:`name`,
    :meth:`type_of`, :meth:`indices_of`) or all at once (:attr:`names`, :attr:`types`).

    Looking names up needs no table of all of them when the kernel has
    ``kallsyms_seqs_of_names`` (Linux >= 6.2, and backports): its symbol indices
    sorted by name allow a binary search, as the kernel's own
    ``kallsyms_lookup_name`` does.  That keeps opening a dump cheap."""

    def __init__(
        self,
        names_raw: bytes,
        starts: bytes,
        table: bytes,
        index: tuple[int, ...],
        addresses: Sequence[int] | None = None,
        long_lengths: bool = True,
    ) -> None:
        self._raw = names_raw
        self._starts_raw = starts
        self._starts: U32Array = u32s(starts)
        self._long_lengths = long_lengths
        self._table, self._index = table, index
        ends = [table.find(b"\0", i) for i in index]
        if len(index) != 256 or min(ends) < 0:
            raise DumpFormatError("kallsyms_token_table is corrupt (token without NUL)")
        self._token_bytes = [table[i:end] for i, end in zip(index, ends, strict=True)]
        self._tokens = [t.decode("latin-1") for t in self._token_bytes]
        self.addresses: Sequence[int] = addresses if addresses is not None else array.array("Q")
        self._seqs: bytes | None = None  # kallsyms_seqs_of_names: 3-byte big-endian
        self._decoded: dict[int, str] = {}
        self._hashes: bytes | None = None  # crc32 of each name (kernels without seqs)

    def __len__(self) -> int:
        return len(self._starts)

    def _tokens_of(self, i: int) -> bytes:
        """Entry ``i``'s token bytes (the walk checked that each fits in the names)."""
        pos = self._starts[i]
        length = self._raw[pos]
        if length & 0x80 and self._long_lengths:
            length = (length & 0x7F) | self._raw[pos + 1] << 7
            pos += 1
        return self._raw[pos + 1 : pos + 1 + length]

    def name(self, i: int) -> str:
        """The name of entry ``i`` (decoded once)."""
        found = self._decoded.get(i)
        if found is None:
            found = "".join(map(self._tokens.__getitem__, self._tokens_of(i)))[1:]
            self._decoded[i] = found
        return found

    def type_of(self, i: int) -> str:
        """The nm type character of entry ``i``: the first of its first token."""
        for token in self._tokens_of(i):
            if self._tokens[token]:
                return self._tokens[token][0]
        return "?"

    @cached_property
    def _expanded(self) -> tuple[bytes, bytes, bytes]:
        """Every name (NUL after each), every type, where each name starts in the text."""
        try:
            return kallsyms_expand(
                self._raw, self._starts_raw, self._long_lengths, self._token_bytes
            )
        except ValueError as exc:
            raise DumpFormatError(str(exc)) from None

    @cached_property
    def names(self) -> list[str]:
        """Every name, decoded at once (completion, listings)."""
        names = self._expanded[0].decode("latin-1").split("\0")[:-1]
        if len(names) != len(self):
            raise DumpFormatError("kallsyms_names has a NUL inside a name (corrupt)")
        return names

    @cached_property
    def types(self) -> list[str]:
        """Every nm type character, in kallsyms order."""
        return list(self._expanded[1].decode("latin-1"))

    def _seq(self, j: int) -> int:
        assert self._seqs is not None
        return int.from_bytes(self._seqs[3 * j : 3 * j + 3], "big")

    def indices_of(self, name: str) -> list[int]:
        """Entries called ``name``, in kallsyms order: a binary search over
        seqs_of_names, or (a kernel without it) the entries whose name has the same
        crc32 (every name expanded and hashed once, in C when built), compared."""
        if self._seqs is None:
            try:
                key = name.encode("latin-1")
            except UnicodeEncodeError:
                return []
            text, _types, offsets = self._expanded
            if self._hashes is None:
                self._hashes = name_hashes(text, offsets, 0)
            at = u32s(offsets)
            same = u32_matches(self._hashes, [zlib.crc32(key)])
            return [i for i in same if text[at[i] : at[i] + len(key) + 1] == key + b"\0"]
        n = len(self)
        lo = bisect_left(range(n), name, key=lambda j: self.name(self._seq(j)))
        found = []
        while lo < n and self.name(self._seq(lo)) == name:
            found.append(self._seq(lo))
            lo += 1
        return sorted(found)

    @property
    def searchable(self) -> bool:
        return self._seqs is not None

    def use_seqs_of_names(self, data: bytes) -> bool:
        """Take ``kallsyms_seqs_of_names`` (3-byte big-endian indices) if ``data`` is
        it: a permutation of the entries whose names are in order, checked on a
        sample (its address is not exported, so candidates are tried)."""
        count = len(self)
        if len(data) < 3 * count or not seqs_check(data[: 3 * count], count):
            return False
        seqs = data[: 3 * count]
        step = max(1, count // 64)
        for i in range(0, count - 1, step):
            a = int.from_bytes(seqs[3 * i : 3 * i + 3], "big")
            b = int.from_bytes(seqs[3 * i + 3 : 3 * i + 6], "big")
            if self.name(a) > self.name(b):
                return False
        self._seqs = seqs
        return True

    def index_of(self, name: str) -> int | None:
        """The first entry called ``name``, or None."""
        found = self.indices_of(name)
        return found[0] if found else None

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo, read: ReadFn) -> Kallsyms:
        """Read and decode the tables; a one-line error when the kernel predates them."""
        need = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table")
        missing = [n for n in need + ("kallsyms_token_index",) if info.symbol(n) is None]
        if missing:
            raise DumpFormatError(
                f"{info.source}: VMCOREINFO has no kallsyms tables ({', '.join(missing)}); "
                "symbols need Linux >= 6.0"
            )
        count = struct.unpack("<I", read(info.require("SYMBOL(kallsyms_num_syms)"), 4))[0]
        if not 0 < count < _MAX_SYMS:
            raise DumpFormatError(f"{info.source}: implausible kallsyms_num_syms {count}")
        index = struct.unpack("<256H", read(info.require("SYMBOL(kallsyms_token_index)"), 512))
        table_addr = info.require("SYMBOL(kallsyms_token_table)")
        table = read(table_addr, max(index) + 256)
        if any(table.find(b"\0", i) < 0 for i in index):
            raise DumpFormatError(f"{info.source}: kallsyms_token_table is corrupt")
        names_addr = info.require("SYMBOL(kallsyms_names)")
        names_raw = cls._read_names(read, info, names_addr, count)
        starts, end = entry_starts(names_raw, count)
        k = cls(names_raw, starts, table, index)
        offsets_addr = info.symbol("kallsyms_offsets")
        if offsets_addr is None:
            raise DumpFormatError(f"{info.source}: VMCOREINFO has no SYMBOL(kallsyms_offsets)")
        base_addr = info.symbol("kallsyms_relative_base")
        k._find_seqs(read, names_addr + end, offsets_addr + 4 * count, base_addr)
        offsets = read(offsets_addr, 4 * count)
        base = struct.unpack("<Q", read(base_addr, 8))[0] if base_addr else None
        k.addresses = cls._pick_encoding(info, k, offsets, base, offsets_addr)
        return k

    def _find_seqs(
        self, read: ReadFn, names_end: int, offsets_end: int, base_addr: int | None
    ) -> None:
        """Where kernels put seqs_of_names: after the markers that follow the names
        (6.2-6.x and backports), or after kallsyms_offsets / kallsyms_relative_base
        (later).  Without it, names are looked up in a table of all of them."""
        markers_end = names_end + 4 * ((len(self) + 255) // 256)
        places = [offsets_end, (markers_end + 3) & ~3, (markers_end + 7) & ~7]
        if base_addr is not None:
            places.insert(0, base_addr + 8)
        for place in dict.fromkeys(places):
            try:
                data = read(place, 3 * len(self))
            except KdumpyError:
                continue
            if self.use_seqs_of_names(data):
                return

    @staticmethod
    def _read_names(read: ReadFn, info: VmcoreInfo, addr: int, count: int) -> bytes:
        """The names stream.  Its length is not exported, but the kernel's build emits
        it before the other kallsyms tables (markers, token table, ...), so it ends
        before the nearest table above it; without one, read in growing chunks."""
        above = [
            a
            for n in ("kallsyms_token_table", "kallsyms_token_index", "kallsyms_offsets")
            if (a := info.symbol(n)) is not None and addr < a <= addr + (64 << 20)
        ]
        if above:
            return read(addr, min(above) - addr)
        size = count * 16
        while size <= 64 << 20:
            data = read(addr, size)
            try:
                end = entry_starts(data, count)[1]
            except DumpFormatError:
                size *= 2
                continue
            return data[:end]
        raise DumpFormatError("kallsyms_names is corrupt (no end within 64 MiB)")

    @staticmethod
    def _pick_encoding(
        info: VmcoreInfo, k: Kallsyms, offsets: bytes, base: int | None, table: int
    ) -> array.array:
        stext = info.symbol("_stext")
        found = k.index_of("_stext")
        candidates = candidate_addresses(offsets, base, table)
        if stext is not None and found is not None:
            for encoding in candidates.values():
                if encoding.address(found) == stext:
                    return encoding.addresses()
            raise DumpFormatError(
                f"{info.source}: no kallsyms address encoding reproduces _stext {stext:#x}"
            )
        return next(iter(candidates.values())).addresses()
