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

import struct
from collections.abc import Callable
from functools import cached_property

import numpy as np

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

ReadFn = Callable[[int, int], bytes]

# Sanity bound: a kernel has a few hundred thousand symbols at most.
_MAX_SYMS = 2_000_000


def entry_starts(names: bytes, count: int, long_lengths: bool = True) -> tuple[list[int], int]:
    """Offset of each entry's length prefix, and where the last entry ends.  The
    entries form a chain (each length says where the next begins), so this one walk
    stays in Python; the rest of the decoding is vectorised.  ``long_lengths``: a
    length byte with its top bit set is followed by a second one (Linux >= 6.1)."""
    starts = [0] * count
    pos = 0
    try:
        for i in range(count):
            starts[i] = pos
            length = names[pos]
            if length & 0x80 and long_lengths:
                length = (length & 0x7F) | (names[pos + 1] << 7)
                pos += 1
            pos += 1 + length
    except IndexError:
        raise DumpFormatError("kallsyms_names ends early (corrupt or truncated)") from None
    if pos > len(names):
        raise DumpFormatError("kallsyms_names ends early (corrupt or truncated)")
    return starts, pos


def _lengths(
    data: np.ndarray, starts: np.ndarray, long_lengths: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each entry's token count, and whether its length took two bytes."""
    if not long_lengths:
        return data[starts].astype(np.int32), np.zeros(len(starts), dtype=bool)
    wide = (data[starts] & 0x80) != 0
    lengths = (data[starts] & 0x7F).astype(np.int32)
    lengths[wide] |= data[starts[wide] + 1].astype(np.int32) << 7
    return lengths, wide


def _expand_names(
    names: bytes,
    starts: np.ndarray,
    table: bytes,
    index: tuple[int, ...],
    long_lengths: bool = True,
) -> tuple[list[str], str]:
    """Decode ``count`` token-compressed entries into names and their nm type
    characters, with numpy: every token byte becomes its text, gathered from the token
    table in one go."""
    data = np.frombuffer(names, dtype=np.uint8)
    count = len(starts)
    lengths, wide = _lengths(data, starts, long_lengths)
    if not lengths.all():
        raise DumpFormatError("kallsyms_names has an empty entry (corrupt)")
    # Token bytes of all entries, in order: skip the 1-2 length bytes of each entry.
    body = np.ones(int(starts[-1]) + 1 + int(wide[-1]) + int(lengths[-1]), dtype=bool)
    body[starts] = False
    body[starts[wide] + 1] = False
    tokens = data[: len(body)][body]
    # Text of each of the 256 tokens: start in the table and length (up to its NUL).
    tok_start = np.array(index, dtype=np.int32)
    ends = [table.find(b"\0", i) for i in index]
    if min(ends) < 0:
        raise DumpFormatError("kallsyms_token_table is corrupt (token without NUL)")
    tok_len = np.array(ends, dtype=np.int32) - tok_start
    piece_len = tok_len[tokens]
    piece_end = np.cumsum(piece_len, dtype=np.int32)
    piece_out = piece_end - piece_len  # where each token's text goes
    src = np.repeat(tok_start[tokens] - piece_out, piece_len)
    src += np.arange(len(src), dtype=np.int32)
    text = np.frombuffer(table, dtype=np.uint8)[src]
    # Each name's first character is its type; a NUL there separates the names.
    name_start = piece_out[np.cumsum(lengths, dtype=np.int32) - lengths]
    types = text[name_start].tobytes().decode("latin-1")
    text[name_start] = 0
    decoded = text.tobytes().decode("latin-1").split("\0")[1:]
    if len(decoded) != count:
        raise DumpFormatError("kallsyms_names has a NUL inside a name (corrupt)")
    return decoded, types


def candidate_addresses(
    offsets: np.ndarray, base: int | None, table_addr: int
) -> dict[str, np.ndarray]:
    """Every address encoding kernels have used, as uint64 arrays."""
    signed = offsets.astype(np.int64)
    candidates: dict[str, np.ndarray] = {}
    if base is not None:
        rel = (np.uint64(base) + offsets.astype(np.uint32).astype(np.uint64)).astype(np.uint64)
        candidates["relative"] = rel
        absolute = np.where(
            signed >= 0,
            signed.astype(np.uint64),
            (np.uint64(base) - np.uint64(1) - signed.astype(np.uint64)),
        ).astype(np.uint64)
        candidates["absolute-percpu"] = absolute
    place = np.arange(len(offsets), dtype=np.uint64) * np.uint64(4) + np.uint64(table_addr)
    candidates["place-relative"] = (place + signed.astype(np.uint64)).astype(np.uint64)
    return candidates


class Kallsyms:
    """vmlinux symbols in kallsyms order (sorted by address): ``types`` (one nm
    character each) and ``addresses`` (uint64 numpy array) up front; names decoded one
    at a time on demand (:meth:`name`, :meth:`indices_of`) or all at once
    (:attr:`names`).

    Looking names up needs no table of all of them when the kernel has
    ``kallsyms_seqs_of_names`` (Linux >= 6.2, and backports): its symbol indices
    sorted by name allow a binary search, as the kernel's own
    ``kallsyms_lookup_name`` does.  That keeps opening a dump cheap."""

    def __init__(
        self,
        names_raw: bytes,
        starts: np.ndarray,
        table: bytes,
        index: tuple[int, ...],
        addresses: np.ndarray | None = None,
        long_lengths: bool = True,
    ) -> None:
        self._raw = names_raw
        data = np.frombuffer(names_raw, dtype=np.uint8)
        self._starts = starts
        self._long_lengths = long_lengths
        self._lengths, wide = _lengths(data, starts, long_lengths)
        self._first = starts + 1 + wide  # first token byte of each entry
        if not self._lengths.all():
            raise DumpFormatError("kallsyms_names has an empty entry (corrupt)")
        self._table, self._index = table, index
        self._tokens = [table[i : table.find(b"\0", i)].decode("latin-1") for i in index]
        # The type is the first character of an entry's first token.
        firsts = "".join(t[:1] or "?" for t in self._tokens).encode("latin-1")
        self.types: list[str] = list(
            np.frombuffer(firsts, dtype=np.uint8)[data[self._first]].tobytes().decode("latin-1")
        )
        self.addresses = addresses if addresses is not None else np.zeros(0, dtype=np.uint64)
        self._seqs: np.ndarray | None = None
        self._decoded: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def name(self, i: int) -> str:
        """The name of entry ``i`` (decoded once)."""
        found = self._decoded.get(i)
        if found is None:
            first = int(self._first[i])
            tokens = self._raw[first : first + int(self._lengths[i])]
            found = "".join(map(self._tokens.__getitem__, tokens))[1:]
            self._decoded[i] = found
        return found

    @cached_property
    def names(self) -> list[str]:
        """Every name, decoded at once (completion, and kernels without seqs_of_names)."""
        return _expand_names(self._raw, self._starts, self._table, self._index, self._long_lengths)[
            0
        ]

    @property
    def searchable(self) -> bool:
        return self._seqs is not None

    def indices_of(self, name: str) -> list[int]:
        """Entries called ``name``, in kallsyms order (binary search over
        seqs_of_names; needs :attr:`searchable`)."""
        seqs = self._seqs
        assert seqs is not None
        lo, hi = 0, len(seqs)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.name(int(seqs[mid])) < name:
                lo = mid + 1
            else:
                hi = mid
        found = []
        while lo < len(seqs) and self.name(int(seqs[lo])) == name:
            found.append(int(seqs[lo]))
            lo += 1
        return sorted(found)

    def use_seqs_of_names(self, data: bytes) -> bool:
        """Take ``kallsyms_seqs_of_names`` (3-byte big-endian indices) if ``data`` is
        it: a permutation of the entries whose names are in order, checked on a
        sample (its address is not exported, so candidates are tried)."""
        count = len(self)
        if len(data) < 3 * count:
            return False
        b = np.frombuffer(data[: 3 * count], dtype=np.uint8).reshape(count, 3).astype(np.int64)
        seqs = b[:, 0] << 16 | b[:, 1] << 8 | b[:, 2]
        if int(seqs.max()) >= count or not (np.bincount(seqs, minlength=count) == 1).all():
            return False
        step = max(1, count // 64)
        for i in range(0, count - 1, step):
            if self.name(int(seqs[i])) > self.name(int(seqs[i + 1])):
                return False
        self._seqs = seqs
        return True

    def index_of(self, name: str) -> int | None:
        """The first entry called ``name``, or None."""
        if self.searchable:
            found = self.indices_of(name)
            return found[0] if found else None
        try:
            return self.names.index(name)
        except ValueError:
            return None

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
        k = cls(names_raw, np.array(starts, dtype=np.int32), table, index)
        offsets_addr = info.symbol("kallsyms_offsets")
        if offsets_addr is None:
            raise DumpFormatError(f"{info.source}: VMCOREINFO has no SYMBOL(kallsyms_offsets)")
        base_addr = info.symbol("kallsyms_relative_base")
        k._find_seqs(read, names_addr + end, offsets_addr + 4 * count, base_addr)
        offsets = np.frombuffer(read(offsets_addr, 4 * count), dtype=np.int32)
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
        info: VmcoreInfo, k: Kallsyms, offsets: np.ndarray, base: int | None, table: int
    ) -> np.ndarray:
        stext = info.symbol("_stext")
        found = k.index_of("_stext")
        where = -1 if found is None else found
        candidates = candidate_addresses(offsets, base, table)
        if stext is not None and where >= 0:
            for addresses in candidates.values():
                if int(addresses[where]) == stext:
                    return addresses
            raise DumpFormatError(
                f"{info.source}: no kallsyms address encoding reproduces _stext {stext:#x}"
            )
        return next(iter(candidates.values()))
