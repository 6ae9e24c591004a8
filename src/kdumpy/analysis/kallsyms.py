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
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

ReadFn = Callable[[int, int], bytes]

# Sanity bound: a kernel has a few hundred thousand symbols at most.
_MAX_SYMS = 2_000_000


def _entry_starts(names: bytes, count: int) -> tuple[list[int], int]:
    """Offset of each entry's length prefix, and where the last entry ends.  The
    entries form a chain (each length says where the next begins), so this one walk
    stays in Python; the rest of the decoding is vectorised."""
    starts = [0] * count
    pos = 0
    try:
        for i in range(count):
            starts[i] = pos
            length = names[pos]
            if length & 0x80:
                length = (length & 0x7F) | (names[pos + 1] << 7)
                pos += 1
            pos += 1 + length
    except IndexError:
        raise DumpFormatError("kallsyms_names ends early (corrupt or truncated)") from None
    if pos > len(names):
        raise DumpFormatError("kallsyms_names ends early (corrupt or truncated)")
    return starts, pos


def _expand_names(
    names: bytes, count: int, table: bytes, index: tuple[int, ...]
) -> tuple[list[str], str]:
    """Decode ``count`` token-compressed entries into names and their nm type
    characters, with numpy: every token byte becomes its text, gathered from the token
    table in one go."""
    data = np.frombuffer(names, dtype=np.uint8)
    starts = np.array(_entry_starts(names, count)[0], dtype=np.int32)
    wide = (data[starts] & 0x80) != 0
    lengths = (data[starts] & 0x7F).astype(np.int32)
    lengths[wide] |= data[starts[wide] + 1].astype(np.int32) << 7
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


def _candidate_addresses(
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
    """Decoded vmlinux symbols: ``names`` (str), ``types`` (one char) and ``addresses``
    (uint64 numpy array), in kallsyms order (sorted by address)."""

    def __init__(self, names: list[str], types: list[str], addresses: np.ndarray) -> None:
        self.names = names
        self.types = types
        self.addresses = addresses

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
        names_addr = info.require("SYMBOL(kallsyms_names)")
        names_raw = cls._read_names(read, info, names_addr, count)
        names, type_chars = _expand_names(names_raw, count, table, index)
        types = list(type_chars)
        offsets_addr = info.symbol("kallsyms_offsets")
        if offsets_addr is None:
            raise DumpFormatError(f"{info.source}: VMCOREINFO has no SYMBOL(kallsyms_offsets)")
        offsets = np.frombuffer(read(offsets_addr, 4 * count), dtype=np.int32)
        base_addr = info.symbol("kallsyms_relative_base")
        base = struct.unpack("<Q", read(base_addr, 8))[0] if base_addr else None
        addresses = cls._pick_encoding(info, names, offsets, base, offsets_addr)
        return cls(names, types, addresses)

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
                end = _entry_starts(data, count)[1]
            except DumpFormatError:
                size *= 2
                continue
            return data[:end]
        raise DumpFormatError("kallsyms_names is corrupt (no end within 64 MiB)")

    @staticmethod
    def _pick_encoding(
        info: VmcoreInfo, names: list[str], offsets: np.ndarray, base: int | None, table: int
    ) -> np.ndarray:
        stext = info.symbol("_stext")
        try:
            where = names.index("_stext")
        except ValueError:
            where = -1
        candidates = _candidate_addresses(offsets, base, table)
        if stext is not None and where >= 0:
            for addresses in candidates.values():
                if int(addresses[where]) == stext:
                    return addresses
            raise DumpFormatError(
                f"{info.source}: no kallsyms address encoding reproduces _stext {stext:#x}"
            )
        return next(iter(candidates.values()))
