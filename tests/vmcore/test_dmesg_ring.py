"""Corner cases of the lockless printk ring buffer (Linux 5.10+).

A FAKE, said plainly: the lab's real logs are short and never wrap the ring, and a real
kernel cannot be made to leave a reserved or mismatched descriptor on demand.  The ring
below uses the 6.1 lab kernel's own VMCOREINFO offsets and the kernel's encoding
(``kernel/printk/printk_ringbuffer.h``): state in the top 2 bits of ``state_var``, the id
in the rest; data blocks start with the 8-byte descriptor id; a block whose ``begin``
lies after ``next`` (modulo the ring size) wrapped and sits at offset 0; ``lpos`` 1 marks
a data-less record.  The expected text is written by hand.
"""

from __future__ import annotations

import struct

from kdumpy.vmcore.dmesg import kernel_log

from .test_dmesg_legacy import FakeDump

PRB, RB, DESCS, INFOS, DATA = (0xFFFFFFFF82000000 + i * 0x1000 for i in range(5))
COUNT_BITS, SIZE_BITS = 3, 7  # 8 descriptors, 128 bytes of text
VMCOREINFO = f"""SYMBOL(prb)={PRB:x}
SIZE(printk_ringbuffer)=88
OFFSET(printk_ringbuffer.desc_ring)=0
OFFSET(printk_ringbuffer.text_data_ring)=48
SIZE(prb_desc_ring)=48
OFFSET(prb_desc_ring.count_bits)=0
OFFSET(prb_desc_ring.descs)=8
OFFSET(prb_desc_ring.infos)=16
OFFSET(prb_desc_ring.head_id)=24
OFFSET(prb_desc_ring.tail_id)=32
SIZE(prb_desc)=24
OFFSET(prb_desc.state_var)=0
OFFSET(prb_desc.text_blk_lpos)=8
OFFSET(prb_data_blk_lpos.begin)=0
OFFSET(prb_data_blk_lpos.next)=8
SIZE(printk_info)=88
OFFSET(printk_info.seq)=0
OFFSET(printk_info.ts_nsec)=8
OFFSET(printk_info.text_len)=16
OFFSET(printk_info.caller_id)=20
OFFSET(prb_data_ring.size_bits)=0
OFFSET(prb_data_ring.data)=8
SIZE(atomic_long_t)=8
OFFSET(atomic_long_t.counter)=0
"""
RESERVED, COMMITTED, FINALIZED, REUSABLE = range(4)


def build() -> FakeDump:
    descs = bytearray(24 << COUNT_BITS)
    infos = bytearray(88 << COUNT_BITS)
    data = bytearray(1 << SIZE_BITS)

    def put(ident: int, state: int, lpos: tuple[int, int], ts: int, caller: int, text: bytes,
            text_len: int | None = None, sv_id: int | None = None) -> None:  # fmt: skip
        begin, nxt = lpos
        i = ident % (1 << COUNT_BITS)
        sv = (state << 62) | (ident if sv_id is None else sv_id)
        struct.pack_into("<QQQ", descs, 24 * i, sv, begin, nxt)
        n = len(text) if text_len is None else text_len
        struct.pack_into("<QQHxxI", infos, 88 * i, ident, ts, n, caller)
        if begin & 1 == 0 and text:
            at = (begin % len(data)) if begin % len(data) < nxt % len(data) else 0
            struct.pack_into("<Q", data, at, ident)
            data[at + 8 : at + 8 + len(text)] = text

    # Ring offsets used: 0-16 (id 10), 32-48 (12), 48-72 (9), 80-96 (13), 96-112 (14).
    put(9, FINALIZED, (176, 200), 1_000_001_000, 1, b"hello")  # regular block at 48
    put(10, COMMITTED, (224, 272), 2_000_000_000, 0x80000001, b"wrapped!")  # 96 > 16: wraps
    put(11, FINALIZED, (1, 1), 3_000_000_000, 1, b"")  # data-less (FAILED_LPOS)
    put(12, FINALIZED, (288, 304), 4_000_000_000, 7, b"truncate", text_len=20)  # 8-byte block
    put(13, RESERVED, (336, 352), 5_000_000_000, 1, b"writing")  # still being written
    put(14, FINALIZED, (352, 368), 6_000_000_000, 1, b"stale", sv_id=6)  # id mismatch
    rb = bytearray(88)
    struct.pack_into("<IxxxxQQQQ", rb, 0, COUNT_BITS, DESCS, INFOS, 14, 9)  # head 14, tail 9
    struct.pack_into("<IxxxxQ", rb, 48, SIZE_BITS, DATA)
    memory = {PRB: struct.pack("<Q", RB), RB: bytes(rb), DESCS: bytes(descs),
              INFOS: bytes(infos), DATA: bytes(data)}  # fmt: skip
    return FakeDump(memory, VMCOREINFO)


def test_ring_corner_cases() -> None:
    assert kernel_log(build()) == (  # type: ignore[arg-type]
        b"[    1.000001] hello\n[    2.000000] wrapped!\n[    4.000000] truncate\n"
    )


def test_caller_ids() -> None:
    assert kernel_log(build(), caller_id=True) == (  # type: ignore[arg-type]
        b"[    1.000001] [    T1] hello\n"
        b"[    2.000000] [    C1] wrapped!\n"
        b"[    4.000000] [    T7] truncate\n"
    )
