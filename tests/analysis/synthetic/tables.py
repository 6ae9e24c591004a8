"""Kernel tables a synthetic kernel keeps in memory, encoded as the kernel does.

* kallsyms (``scripts/kallsyms.c``, Linux >= 6.2): ``kallsyms_names`` entries are a
  length byte and token indices, the first token char is the nm type; here every token
  is one character (token ``b`` is the byte ``b``), so names need no compressor.
  Addresses are ``kallsyms_relative_base`` + u32 ``kallsyms_offsets``;
  ``kallsyms_seqs_of_names`` (3-byte big-endian indices in name order) follows the base.
* the lockless printk ring buffer (``kernel/printk/printk_ringbuffer.h``), with the
  VMCOREINFO entries that describe it (``kernel/printk/printk.c`` log_buf_vmcoreinfo_setup).
* ORC entries (``arch/x86/include/asm/orc_types.h``, Linux >= 6.4 flags layout).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# -- kallsyms ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KallsymsTables:
    num_syms: bytes
    names: bytes
    markers: bytes
    token_table: bytes
    token_index: bytes
    offsets: bytes
    relative_base: bytes
    seqs_of_names: bytes


def encode_kallsyms(symbols: list[tuple[str, int, str]], base: int) -> KallsymsTables:
    """``(name, address, nm type)`` sorted by address -> the kernel's tables."""
    names = bytearray()
    markers = []
    for i, (name, _addr, kind) in enumerate(symbols):
        if i % 256 == 0:
            markers.append(len(names))
        entry = (kind + name).encode()
        assert 0 < len(entry) < 128, name
        names += bytes([len(entry)]) + entry
    token_table = b"".join(bytes([b]) + b"\0" for b in range(256))
    token_index = struct.pack("<256H", *(2 * b for b in range(256)))
    offsets = struct.pack(f"<{len(symbols)}I", *(addr - base for _, addr, _ in symbols))
    order = sorted(range(len(symbols)), key=lambda i: symbols[i][0])
    seqs = b"".join(i.to_bytes(3, "big") for i in order)
    return KallsymsTables(
        struct.pack("<I", len(symbols)),
        bytes(names),
        struct.pack(f"<{len(markers)}I", *markers),
        token_table,
        token_index,
        offsets,
        struct.pack("<Q", base),
        seqs,
    )


# -- printk ring buffer ---------------------------------------------------------------------

PRINTK_VMCOREINFO = """SIZE(printk_ringbuffer)=88
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
DESC_FINALIZED = 2


@dataclass(frozen=True)
class PrintkRing:
    ringbuffer: bytes  # struct printk_ringbuffer (pointers filled by the caller's layout)
    descs: bytes
    infos: bytes
    data: bytes


def record_level(index: int) -> int:
    """The log level the synthetic ring gives its record ``index``."""
    return index % 8


def encode_printk(
    records: list[tuple[int, bytes]],
    descs_addr: int,
    infos_addr: int,
    data_addr: int,
    count_bits: int = 7,
    size_bits: int = 15,
) -> PrintkRing:
    """``(ts_nsec, text)`` records, oldest first, finalized, ids from 0, no wrap; record
    ``i`` has log level ``i % 8`` (:func:`record_level`)."""
    count, size = 1 << count_bits, 1 << size_bits
    assert len(records) <= count
    descs, infos, data = bytearray(24 * count), bytearray(88 * count), bytearray(size)
    lpos = 0
    for ident, (ts, text) in enumerate(records):
        block = 8 + len(text)
        begin, nxt = lpos, lpos + ((block + 7) & ~7)
        assert nxt <= size, "printk data ring too small"
        struct.pack_into("<QQQ", descs, 24 * ident, DESC_FINALIZED << 62 | ident, begin, nxt)
        level = record_level(ident) << 5  # u8 facility (0), then u8 flags:5, level:3
        struct.pack_into("<QQHxBI", infos, 88 * ident, ident, ts, len(text), level, 1)
        struct.pack_into("<Q", data, begin, ident)
        data[begin + 8 : begin + 8 + len(text)] = text
        lpos = nxt
    rb = bytearray(88)
    head = max(0, len(records) - 1)
    struct.pack_into("<IxxxxQQQQ", rb, 0, count_bits, descs_addr, infos_addr, head, 0)
    struct.pack_into("<IxxxxQ", rb, 48, size_bits, data_addr)
    return PrintkRing(bytes(rb), bytes(descs), bytes(infos), bytes(data))


# -- ORC ------------------------------------------------------------------------------------

ORC_REG_UNDEFINED, ORC_REG_SP = 0, 5
ORC_TYPE_UNDEFINED, ORC_TYPE_END_OF_STACK, ORC_TYPE_CALL, ORC_TYPE_REGS = 0, 1, 2, 3


def orc_entry(kind: int, sp_offset: int = 0, sp_reg: int = ORC_REG_SP) -> bytes:
    """One ``struct orc_entry`` (6 bytes): sp_offset, bp_offset, flags."""
    if kind in (ORC_TYPE_UNDEFINED, ORC_TYPE_END_OF_STACK):
        sp_reg = ORC_REG_UNDEFINED
    flags = sp_reg | ORC_REG_UNDEFINED << 4 | kind << 8
    return struct.pack("<hhH", sp_offset, 0, flags)
