"""The 3.5-5.9 ``printk_log`` reader.

A FAKE, said plainly: the lab has no kernel older than 6.1 (every lab kernel uses the
lockless ring buffer), so nothing real can exercise this format here.  The buffer below
is laid out as ``kernel/printk/printk.c`` (5.x) stores it: 16-byte ``struct printk_log``
headers (ts_nsec u64, len u16, text_len u16, dict_len u16, facility u8, flags/level u8),
text, then padding to 8 bytes; a header with ``len == 0`` marks the end of the buffer and
the next record is at offset 0.  The expected text is written out by hand from the
kernel's console format and makedumpfile's indent rule, not produced by our code.
"""

from __future__ import annotations

import struct

import pytest

from kdumpy.errors import DumpFormatError
from kdumpy.vmcore.dmesg import kernel_log, records
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

LOG_BUF, LOG_BUF_LEN, FIRST, NEXT, BUF = (0xFFFFFFFF81000000 + i * 0x100 for i in range(5))
VMCOREINFO = f"""OSRELEASE=5.4.0-fake
SYMBOL(log_buf)={LOG_BUF:x}
SYMBOL(log_buf_len)={LOG_BUF_LEN:x}
SYMBOL(log_first_idx)={FIRST:x}
SYMBOL(clear_idx)={FIRST:x}
SYMBOL(log_next_idx)={NEXT:x}
SIZE(printk_log)=16
OFFSET(printk_log.ts_nsec)=0
OFFSET(printk_log.len)=8
OFFSET(printk_log.text_len)=10
OFFSET(printk_log.dict_len)=12
"""


def record(ts_nsec: int, text: bytes, pad_to: int | None = None, level: int = 6) -> bytes:
    length = (16 + len(text) + 7) & ~7 if pad_to is None else pad_to
    head = struct.pack("<QHHHBB", ts_nsec, length, len(text), 0, 0, 0b10101 | level << 5)
    return (head + text).ljust(length, b"\0")


class FakeDump:
    """Kernel memory as a dict of virtual address -> bytes (no page tables involved)."""

    def __init__(self, memory: dict[int, bytes], info: str) -> None:
        self.memory = memory
        self.path = "fake-5.4-dump"
        self.vmcoreinfo = VmcoreInfo(info, self.path)

    def read_virt(self, va: int, size: int) -> bytes:
        for base, data in self.memory.items():
            if base <= va and va + size <= base + len(data):
                return data[va - base : va - base + size]
        raise DumpFormatError(f"{self.path}: {va:#x} not in fake memory")


def make(buf: bytes, first: int, nxt: int) -> FakeDump:
    return FakeDump(
        {
            LOG_BUF: struct.pack("<Q", BUF),
            LOG_BUF_LEN: struct.pack("<i", len(buf)),
            FIRST: struct.pack("<I", first),
            NEXT: struct.pack("<I", nxt),
            BUF: buf,
        },
        VMCOREINFO,
    )


def test_wrapping_buffer() -> None:
    a = record(5_000_000, b"oldest message")
    b = record(1_500_000_000, b"two\nlines")
    c = record(61_000_123_456, b"bell\x07 and \xe9")
    size = 256
    # Layout: [c][free ...][a][b][wrap marker]; first = a, next = after c.
    tail = a + b
    start_a = size - len(tail) - 16
    buf = bytearray(size)
    buf[: len(c)] = c
    buf[start_a : start_a + len(tail)] = tail
    buf[start_a + len(tail) : start_a + len(tail) + 16] = bytes(16)  # len == 0: wrap
    out = kernel_log(make(bytes(buf), start_a, len(c)))  # type: ignore[arg-type]
    assert out == (
        b"[    0.005000] oldest message\n"
        b"[    1.500000] two\n"
        b"               lines\n"
        b"[   61.000123] bell\\x07 and \\xffffffe9\n"
    )


def test_corrupt_length_does_not_loop_forever() -> None:
    a = record(1_000, b"a")
    loop = bytearray(a)
    loop[8:10] = struct.pack("<H", 0x20)  # points past itself, then back via garbage
    buf = bytes(loop) + record(2_000, b"b", pad_to=0x20)[:0x10] + bytes(0x40)
    out = kernel_log(make(buf, 0, 0x48))  # type: ignore[arg-type]
    assert out.startswith(b"[    0.000001] a\n")


def test_implausible_length_is_an_error() -> None:
    dump = make(b"\0" * 64, 0, 8)
    dump.memory[LOG_BUF_LEN] = struct.pack("<i", -1)
    with pytest.raises(DumpFormatError, match="implausible log_buf"):
        kernel_log(dump)  # type: ignore[arg-type]


def test_levels_from_the_flags_byte() -> None:
    """``log -m``: the level is the top three bits of the byte after ``facility`` (the
    flags in the low five bits are set here so a wrong shift shows)."""
    recs = [record(i, b"msg %d" % i, level=level) for i, level in enumerate((0, 4, 7))]
    buf = b"".join(recs) + bytes(16)
    got = [(r.text, r.level) for r in records(make(buf, 0, sum(map(len, recs))))]  # type: ignore[arg-type]
    assert got == [(b"msg 0", 0), (b"msg 1", 4), (b"msg 2", 7)]
