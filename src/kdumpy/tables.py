"""The passes over a dump's tables that opening it and a first backtrace need: BTF
records, kallsyms entries and addresses, ORC addresses.  Each is one pass over ~100k
records, so they run in C (``kdumpy._tables``, built by setup.py) when it is built;
these are the same functions in Python for an install built without a compiler (same
results: the tests compare the two), which only opens dumps more slowly.  Below every
layer (the architecture layer's ORC tables use it): it needs nothing but the standard
library.

Arrays come back as little-endian ``uint32`` bytes; :func:`u32s` indexes them.
"""

from __future__ import annotations

import array
import sys
import zlib
from collections.abc import Sequence

U32Array = memoryview | array.array


def u32s(data: bytes) -> U32Array:
    """Little-endian ``uint32`` bytes as a sequence of ints (no copy on little-endian)."""
    if sys.byteorder == "little":
        return memoryview(data).cast("I")
    out = array.array("I", data)
    out.byteswap()
    return out


def le_array(typecode: str, data: bytes) -> array.array:
    """Little-endian bytes as an array of ``typecode`` (``"i"``, ``"Q"``...)."""
    out = array.array(typecode)
    out.frombytes(data[: len(data) - len(data) % out.itemsize])
    if sys.byteorder != "little":
        out.byteswap()
    return out


def _le(values: Sequence[int]) -> bytes:
    out = array.array("I", values)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def btf_records_py(types: bytes, fixed: bytes, per: bytes) -> tuple[bytes, bytes, bytes]:
    """Byte offset, name_off and info word of every record of a BTF type section."""
    if len(fixed) != 32 or len(per) != 32 or min(fixed) < 3:
        raise ValueError("fixed and per take 32 kinds each, a record at least 3 words")
    if len(types) % 4:
        raise ValueError("BTF type section is not whole words")
    words = u32s(bytes(types))
    offsets: list[int] = []
    names: list[int] = []
    infos: list[int] = []
    pos, end = 0, len(words)
    while pos < end:
        if pos + 2 >= end:
            pos = end + 1
            break
        info = words[pos + 1]
        offsets.append(4 * pos)
        names.append(words[pos])
        infos.append(info)
        kind = info >> 24 & 0x1F
        pos += fixed[kind] + per[kind] * (info & 0xFFFF)
    if pos != end:
        raise ValueError("BTF type section is truncated")
    return _le(offsets), _le(names), _le(infos)


def name_hashes_py(strings: bytes, name_offs: bytes, str_base: int) -> bytes:
    """zlib's crc32 of the NUL-terminated string at each ``name_off - str_base`` in
    ``strings`` (0 outside them): names are looked up by hash, then compared."""
    hashes = []
    for at in u32s(bytes(name_offs[: len(name_offs) & ~3])):
        at -= str_base
        if 0 <= at < len(strings):
            end = strings.find(b"\0", at)
            hashes.append(zlib.crc32(strings[at : end if end >= 0 else None]))
        else:
            hashes.append(0)
    return _le(hashes)


def u32_matches_py(words: bytes, values: Sequence[int]) -> list[int]:
    """Indices of the little-endian ``uint32`` words equal to one of ``values``, in order.
    A few rare values are searched for by bytes.find; many values, or a common one
    (zero words), by one pass over every word."""
    data = bytes(words[: len(words) & ~3])
    want = {v for v in values if 0 <= v <= 0xFFFFFFFF}
    found: list[int] = []
    if len(want) <= 8:
        for value in want:
            pattern = value.to_bytes(4, "little")
            at = data.find(pattern)
            while at >= 0 and len(found) <= 256:
                if at % 4 == 0:
                    found.append(at // 4)
                at = data.find(pattern, at + 1)
            if len(found) > 256:
                break
        else:
            return sorted(found)
    return [i for i, w in enumerate(u32s(data)) if w in want]


def kallsyms_walk_py(names: bytes, count: int, long_lengths: bool) -> tuple[bytes, int, bool]:
    """Offset of each entry's length prefix, where the last entry ends, and whether
    every entry has a token; ``long_lengths``: a length byte with its top bit set is
    followed by a second one (Linux >= 6.1)."""
    starts = [0] * count
    pos = 0
    nonempty = True
    try:
        for i in range(count):
            starts[i] = pos
            length = names[pos]
            if length & 0x80 and long_lengths:
                length = (length & 0x7F) | (names[pos + 1] << 7)
                pos += 1
            nonempty = nonempty and length > 0
            pos += 1 + length
    except IndexError:
        raise ValueError("kallsyms_names ends early (corrupt or truncated)") from None
    if pos > len(names):
        raise ValueError("kallsyms_names ends early (corrupt or truncated)")
    return _le(starts), pos, nonempty


_U64 = (1 << 64) - 1
ENCODINGS = ("relative", "absolute-percpu", "place-relative")  # kallsyms_addresses's


def kallsyms_addresses_py(values: bytes, encoding: int, base: int, table: int) -> bytes:
    """Symbol addresses (little-endian uint64 bytes) from 32-bit ``kallsyms_offsets``
    entries, by encoding (an index of :data:`ENCODINGS`), modulo 2**64."""
    if encoding == 0:
        addrs = [(base + v) & _U64 for v in u32s(bytes(values[: len(values) & ~3]))]
    elif encoding in (1, 2):
        signed = le_array("i", values)
        if encoding == 1:
            addrs = [v if v >= 0 else (base - 1 - v) & _U64 for v in signed]
        else:
            addrs = [(table + 4 * i + v) & _U64 for i, v in enumerate(signed)]
    else:
        raise ValueError("unknown kallsyms address encoding")
    out = array.array("Q", addrs)
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def u64_sorted_py(data: bytes) -> bool:
    """Whether the little-endian uint64 words of ``data`` never decrease."""
    words = le_array("Q", data)
    return all(a <= b for a, b in zip(words, words[1:], strict=False))


def seqs_check_py(data: bytes, count: int) -> bool:
    """Whether ``data`` is ``count`` 3-byte big-endian indices, each of 0..count-1 once
    (a ``kallsyms_seqs_of_names``)."""
    if len(data) != 3 * count:
        return False
    seen = bytearray(count)
    for j in range(0, 3 * count, 3):
        i = data[j] << 16 | data[j + 1] << 8 | data[j + 2]
        if i >= count or seen[i]:
            return False
        seen[i] = 1
    return True


def kallsyms_expand_py(
    names: bytes, starts: bytes, long_lengths: bool, tokens: Sequence[bytes]
) -> tuple[bytes, bytes, bytes]:
    """Every entry's name followed by a NUL, each entry's type character, and where each
    name starts in the text (little-endian uint32 bytes)."""
    text: list[bytes] = []
    types = bytearray()
    offsets: list[int] = []
    size = 0
    for pos in u32s(starts):
        if pos >= len(names):
            raise ValueError("kallsyms_names is corrupt (an entry runs past its end)")
        length = names[pos]
        pos += 1
        if length & 0x80 and long_lengths:
            if pos >= len(names):
                raise ValueError("kallsyms_names is corrupt (an entry runs past its end)")
            length = (length & 0x7F) | names[pos] << 7
            pos += 1
        if length == 0 or pos + length > len(names):
            raise ValueError("kallsyms_names is corrupt (an entry runs past its end)")
        full = b"".join(map(tokens.__getitem__, names[pos : pos + length]))
        types += full[:1] or b"?"
        text.append(full[1:] + b"\0")
        offsets.append(size)
        size += len(full[1:]) + 1
    return b"".join(text), bytes(types), _le(offsets)


try:
    from kdumpy._tables import (
        btf_records,
        kallsyms_addresses,
        kallsyms_expand,
        kallsyms_walk,
        name_hashes,
        seqs_check,
        u32_matches,
        u64_sorted,
    )
except ImportError:  # built without the C extension
    kallsyms_addresses = kallsyms_addresses_py
    u64_sorted = u64_sorted_py
    seqs_check = seqs_check_py
    btf_records = btf_records_py
    name_hashes = name_hashes_py
    kallsyms_expand = kallsyms_expand_py
    kallsyms_walk = kallsyms_walk_py
    u32_matches = u32_matches_py


def never_decreasing(words: array.array) -> bool:
    """Whether an array of ``uint64`` never decreases (C when built)."""
    if sys.byteorder != "little":
        words = array.array("Q", words)
        words.byteswap()
    return bool(u64_sorted(memoryview(words).cast("B")))
