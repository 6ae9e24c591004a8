"""Finding kallsyms in a kernel image without VMCOREINFO's help, for every layout.

The images are built here the way the kernel's ``scripts/kallsyms`` builds them: names
(type letter first) token-compressed by repeatedly giving the most frequent pair of
adjacent tokens an unused byte value, bytes used literally standing for themselves;
``kallsyms_markers`` every 256 names; labels aligned to 8 bytes; tables in the order and
widths of each kernel era; addresses in each encoding.  The oracle is the symbol list the
image was built from.
"""

from __future__ import annotations

import functools
import random
import struct
from collections import Counter
from dataclasses import dataclass

import pytest

from kdumpy.analysis.kallsyms_scan import DIGITS, read_kernel_image, scan_kallsyms
from kdumpy.errors import DumpFormatError

BASE = 0xFFFFFFFF81000000  # _stext, where the image starts
PERCPU = {"runqueues": 0x2BF40, "current_task": 0x1FBC0, "fixed_percpu_data": 0}


def make_symbols(count: int = 600, long_name: bool = False) -> list[tuple[str, str, int]]:
    """``(type, name, address)`` sorted by address, with kernel-like names."""
    rng = random.Random(7)
    words = [
        "sys",
        "read",
        "write",
        "do",
        "vfs",
        "page",
        "alloc",
        "free",
        "irq",
        "sched",
        "task",
        "lock",
        "unlock",
        "init",
        "exit",
        "ext4",
    ]
    names = {"_stext", "init_uts_ns", "swapper_pg_dir", "init_task"}
    while len(names) < count - len(PERCPU):
        parts = rng.sample(words, rng.randint(1, 4))
        name = "_".join(parts) + (str(rng.randint(0, 99)) if rng.random() < 0.3 else "")
        names.add(("__" if rng.random() < 0.2 else "") + name)
    if long_name:  # compresses to more than 127 tokens: a two-byte length since 6.1
        names.add("x" + "".join(rng.choice("qjzvkw") for _ in range(400)))
    ordered = sorted(names - {"_stext"})
    rng.shuffle(ordered)
    out = [("T", "_stext", BASE)]
    addr = BASE
    for name in ordered:
        addr += rng.randint(1, 40) * 16
        kind = "D" if name in ("init_uts_ns", "swapper_pg_dir", "init_task") else "tTdb"[addr % 4]
        out.append((kind, name, addr))
    out += [("A", name, off) for name, off in PERCPU.items()]
    return sorted(out, key=lambda s: (s[2] < BASE, s[2]))


@functools.cache
def compress(symbols: tuple[bytes, ...]) -> tuple[list[bytes], list[bytes]]:
    """scripts/kallsyms' token table: returns the 256 token texts and the encoded names."""
    table: list[bytes] = [b""] * 256
    used = set(b"".join(symbols))
    for c in used:
        table[c] = bytes([c])
    syms = list(symbols)
    for code in range(255, -1, -1):
        if table[code]:
            continue
        pairs: Counter[bytes] = Counter()
        for s in syms:
            pairs.update(s[i : i + 2] for i in range(len(s) - 1))
        if not pairs:
            break
        best, profit = pairs.most_common(1)[0]
        if profit < 2:
            break
        table[code] = table[best[0]] + table[best[1]]
        syms = [s.replace(best, bytes([code])) for s in syms]
    # Unused codes still get an entry (the kernel writes an empty string only when the
    # table is not full; keep every token non-empty as real tables are).
    for code in range(256):
        if not table[code]:
            table[code] = b"?"
    return table, syms


@dataclass
class Image:
    data: bytes
    anchors: dict[str, int]
    labels: dict[str, int]  # offset of each table in data


class Writer:
    def __init__(self, align: int) -> None:
        self.align = align
        self.buf = bytearray(b"\x90" * 0x3000)  # "text"
        # A decoy: the digits run outside any token table.
        self.buf += b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00" + b"\xaa" * 6
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> int:
        self.buf += b"\0" * (-len(self.buf) % self.align)
        self.labels[name] = len(self.buf)
        return BASE + len(self.buf)

    def put(self, data: bytes) -> None:
        self.buf += data


def build(era: str, symbols: list[tuple[str, str, int]], encoding: str) -> Image:
    """The kernel image of ``era`` holding ``symbols``' kallsyms."""
    raw = [(t + n).encode() for t, n, _ in symbols]
    table, encoded = compress(tuple(raw))
    long_lengths = era not in ("4.18", "5.10")
    names = bytearray()
    markers = []
    for i, e in enumerate(encoded):
        if i % 256 == 0:
            markers.append(len(names))
        if len(e) >= 0x80:
            assert long_lengths
            names += bytes([0x80 | (len(e) & 0x7F), len(e) >> 7])
        else:
            names.append(len(e))
        names += e
    count = len(symbols)
    wide = era == "4.18"
    tok = b"".join(t + b"\0" for t in table)
    index = []
    pos = 0
    for t in table:
        index.append(pos)
        pos += len(t) + 1
    order = sorted(range(count), key=lambda i: raw[i][1:] + b"\0" + raw[i][:1])
    seqs = b"".join(struct.pack(">I", i)[1:] for i in order)
    w = Writer(4 if era == "7.0" else 8)  # 7.x aligns its labels to 4 bytes

    def addresses() -> None:
        addrs = [a for _, _, a in symbols]
        if encoding == "absolute":
            w.label("kallsyms_addresses")
            w.put(struct.pack(f"<{count}Q", *addrs))
            return
        start = w.label("kallsyms_offsets")
        text = [a for a in addrs if a >= BASE]
        relbase = min(text)
        offs = []
        for i, (t, _n, a) in enumerate(symbols):
            if encoding == "relative":
                offs.append(a - relbase)
            elif encoding == "absolute-percpu":
                offs.append(a if t == "A" else relbase - a - 1)
            else:  # place-relative
                offs.append(a - (start + 4 * i))
        fmt = "<" + "".join("I" if encoding == "relative" else "i" for _ in offs)
        w.put(struct.pack(fmt, *offs))
        if encoding != "place-relative":
            w.label("kallsyms_relative_base")
            w.put(struct.pack("<Q", relbase))

    def head() -> None:
        w.label("kallsyms_num_syms")
        w.put(struct.pack("<Q" if wide else "<I", count))
        w.label("kallsyms_names")
        w.put(bytes(names))
        w.label("kallsyms_markers")
        w.put(struct.pack(f"<{len(markers)}{'Q' if wide else 'I'}", *markers))

    def tokens() -> None:
        w.label("kallsyms_token_table")
        w.put(tok)
        w.label("kallsyms_token_index")
        w.put(struct.pack("<256H", *index))

    if era in ("4.18", "5.10", "6.1", "6.2"):
        addresses()
        head()
        if era == "6.2":
            w.label("kallsyms_seqs_of_names")
            w.put(seqs)
        tokens()
    else:  # 6.4, 7.0
        head()
        tokens()
        addresses()
        w.label("kallsyms_seqs_of_names")
        w.put(seqs)
    w.put(b"\x55" * 4096)  # more rodata
    anchors = {n: a for _, n, a in symbols if n in ("_stext", "init_uts_ns", "swapper_pg_dir")}
    return Image(bytes(w.buf), anchors, w.labels)


CASES = [
    ("4.18", "absolute-percpu"),
    ("4.18", "absolute"),
    ("5.10", "absolute-percpu"),
    ("5.10", "relative"),
    ("6.1", "absolute-percpu"),
    ("6.2", "absolute-percpu"),
    ("6.4", "absolute-percpu"),
    ("6.4", "absolute"),
    ("6.4", "relative"),
    ("7.0", "place-relative"),
]


@pytest.fixture(scope="module")
def symbols_short():
    return make_symbols()


@pytest.fixture(scope="module")
def symbols_long():
    return make_symbols(long_name=True)


@pytest.mark.parametrize(("era", "encoding"), CASES)
def test_scan_finds_every_layout(era, encoding, symbols_short, symbols_long):
    symbols = symbols_short if era in ("4.18", "5.10") else symbols_long
    if encoding != "absolute-percpu":  # per-CPU offsets exist only in that encoding
        symbols = [s for s in symbols if s[0] != "A"]
    image = build(era, symbols, encoding)
    k = scan_kallsyms(image.data, BASE, image.anchors, "test image")
    assert k.names == [n for _, n, _ in symbols]
    assert k.types == [t for t, _, _ in symbols]
    assert k.addresses.tolist() == [a for _, _, a in symbols]
    # Name lookups binary-search seqs_of_names where the kernel has it.
    assert k.searchable == (era not in ("4.18", "5.10", "6.1"))
    assert k.index_of("init_task") == [n for _, n, _ in symbols].index("init_task")


def test_wrong_anchor_is_refused(symbols_short):
    image = build("5.10", symbols_short, "absolute-percpu")
    anchors = dict(image.anchors, init_uts_ns=image.anchors["init_uts_ns"] + 64)
    with pytest.raises(DumpFormatError, match="test image: .*no kallsyms tables that check out"):
        scan_kallsyms(image.data, BASE, anchors, "test image")


def test_corrupt_markers_are_refused(symbols_short):
    image = build("5.10", symbols_short, "absolute-percpu")
    data = bytearray(image.data)
    second = image.labels["kallsyms_markers"] + 4  # where name 256 starts
    struct.pack_into("<I", data, second, struct.unpack_from("<I", data, second)[0] + 1)
    with pytest.raises(DumpFormatError, match="no kallsyms tables that check out"):
        scan_kallsyms(bytes(data), BASE, image.anchors, "test image")


def test_no_token_table_is_said():
    with pytest.raises(DumpFormatError, match="has no kallsyms token table"):
        scan_kallsyms(b"\0" * 65536, BASE, {"_stext": BASE}, "test image")


def _pages_read(image: bytes, missing: set[int], page: int = 4096):
    """A dump's physical reader over ``image`` (at 0) lacking the pages in ``missing``, as
    a filtered dump lacks its excluded zero pages and everything past the end."""

    def read(at: int, size: int) -> bytes:
        if at + size > len(image) or any(
            p in missing for p in range(at // page, (at + size - 1) // page + 1)
        ):
            raise DumpFormatError(f"page at {at:#x} is not in the dump")
        return image[at : at + size]

    return read


def test_kernel_image_read_through_excluded_zero_pages():
    """kdumpy's -d 31 capture of a 5.10 guest left out zero pages of .rodata before the
    token table; the scan stopped there ("no kallsyms token table") until missing pages
    inside a chunk were read as the zeros they were."""
    chunk = 4 << 20
    image = bytearray(random.Random(5).randbytes(3 * chunk))
    table_at = 2 * chunk + 12345
    image[table_at : table_at + len(DIGITS)] = DIGITS
    zeros = {5, 6, 1030, 1031}  # pages in the first chunk and in the second
    for p in zeros:
        image[p * 4096 : (p + 1) * 4096] = bytes(4096)
    got = read_kernel_image(_pages_read(bytes(image), zeros), 0, 4096)
    assert got == image  # read to the end: the table and what follows it, zeros in place
    # A chunk the dump has none of ends the image there.
    gone = set(range(1024, 2048))
    got = read_kernel_image(_pages_read(bytes(image), gone), 0, 4096)
    assert got == image[:chunk]
