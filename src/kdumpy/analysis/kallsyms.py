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


def _expand_names(names: bytes, count: int, tokens: list[str]) -> list[str]:
    """Decode ``count`` token-compressed names (type character first)."""
    out: list[str] = []
    append = out.append
    join = "".join
    get = tokens.__getitem__
    pos = 0
    for _ in range(count):
        length = names[pos]
        pos += 1
        if length & 0x80:
            length = (length & 0x7F) | (names[pos] << 7)
            pos += 1
        append(join(map(get, names[pos : pos + length])))
        pos += length
    return out


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
        tokens = [table[i : table.index(b"\0", i)].decode("latin-1") for i in index]
        names_raw = cls._read_names(read, info.require("SYMBOL(kallsyms_names)"), count)
        decoded = _expand_names(names_raw, count, tokens)
        offsets_addr = info.symbol("kallsyms_offsets")
        if offsets_addr is None:
            raise DumpFormatError(f"{info.source}: VMCOREINFO has no SYMBOL(kallsyms_offsets)")
        offsets = np.frombuffer(read(offsets_addr, 4 * count), dtype=np.int32)
        base_addr = info.symbol("kallsyms_relative_base")
        base = struct.unpack("<Q", read(base_addr, 8))[0] if base_addr else None
        names = [d[1:] for d in decoded]
        types = [d[:1] or "?" for d in decoded]
        addresses = cls._pick_encoding(info, names, offsets, base, offsets_addr)
        return cls(names, types, addresses)

    @staticmethod
    def _read_names(read: ReadFn, addr: int, count: int) -> bytes:
        """The names stream, read in growing chunks (its length is not exported)."""
        size = count * 16
        while size <= 64 << 20:
            data = read(addr, size)
            pos = 0
            for _ in range(count):
                if pos + 1 >= len(data):
                    break
                length = data[pos]
                pos += 1
                if length & 0x80:
                    length = (length & 0x7F) | (data[pos] << 7)
                    pos += 1
                pos += length
            else:
                if pos <= len(data):
                    return data[:pos]
            size *= 2
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
