"""The kernel log from a dump, as ``makedumpfile --dump-dmesg`` prints it."""

# Two ring buffer layouts, chosen by VMCOREINFO like makedumpfile does:
#
# * Linux 5.10+: the lockless ``printk_ringbuffer`` (``SYMBOL(prb)``): a descriptor ring
#   (state word = 2 state bits + id), an info array and a text data ring whose blocks
#   start with the descriptor id; records from ``tail_id`` to ``head_id`` that are
#   committed or finalized and carry data are printed.
# * Linux 3.5-5.9: variable-length ``struct printk_log`` records in ``log_buf`` from
#   ``log_first_idx`` to ``log_next_idx``; a record of length 0 wraps to the start.
#
# Each record becomes ``[%5d.%06d] text``; newlines inside the text are followed by an
# indent as wide as the prefix; bytes that are neither printable nor space become
# ``\\xNN`` (makedumpfile passes a signed ``char`` to ``printf``, so bytes >= 0x80 print
# as ``\\xffffffNN``; kept for identical output).  makedumpfile 1.7.5+ adds the caller
# (``[T123]``/``[C1]``) after the time stamp; ``caller_id=True`` does the same.

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdumpy.errors import DumpFormatError, KdumpyError
from kdumpy.printable import escape_bytes

if TYPE_CHECKING:
    from kdumpy.vmcore.base import Dump

DESC_FLAGS_SHIFT = 62
DESC_ID_MASK = (1 << DESC_FLAGS_SHIFT) - 1
DESC_COMMITTED = 1
DESC_FINALIZED = 2
CALLER_CPU = 0x80000000
_MAX_RING_BYTES = 1 << 30  # sanity bound for sizes read from the dump
# The log level is the top 3 bits of the byte holding ``u8 flags:5, level:3``, which
# VMCOREINFO does not locate: it sits right after ``u16 text_len; u8 facility;`` in
# 5.10+'s ``struct printk_info`` and after ``text_len, dict_len, facility`` in the
# legacy ``struct printk_log`` (both layouts unchanged since they appeared).
_LEVEL_AFTER_TEXT_LEN = 3
_LEGACY_LEVEL_AFTER_TEXT_LEN = 5


@dataclass(frozen=True)
class LogRecord:
    """One kernel log message."""

    ts_nsec: int
    text: bytes
    caller_id: int | None = None
    seq: int | None = None
    level: int | None = None  # KERN_EMERG (0) .. KERN_DEBUG (7)


def _u64(buf: bytes, off: int) -> int:
    return int(struct.unpack_from("<Q", buf, off)[0])


def _u32(buf: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", buf, off)[0])


def _u16(buf: bytes, off: int) -> int:
    return int(struct.unpack_from("<H", buf, off)[0])


class _Layout:
    """VMCOREINFO sizes and offsets, each one required (one-line error if absent)."""

    def __init__(self, dump: Dump) -> None:
        self.info = dump.vmcoreinfo

    def __call__(self, key: str) -> int:
        return self.info.require(key)


def lockless_records(dump: Dump) -> Iterator[LogRecord]:
    """Records of the 5.10+ lockless ring buffer, oldest first."""
    need = _Layout(dump)
    info = dump.vmcoreinfo
    read = dump.read_virt
    prb = _u64(read(need("SYMBOL(prb)"), 8), 0)
    rb = read(prb, need("SIZE(printk_ringbuffer)"))
    dr = need("OFFSET(printk_ringbuffer.desc_ring)")
    tr = need("OFFSET(printk_ringbuffer.text_data_ring)")
    counter = info.offset("atomic_long_t.counter") or 0
    count_bits = _u32(rb, dr + need("OFFSET(prb_desc_ring.count_bits)"))
    size_bits = _u32(rb, tr + need("OFFSET(prb_data_ring.size_bits)"))
    desc_size, info_size = need("SIZE(prb_desc)"), need("SIZE(printk_info)")
    if count_bits > 24 or size_bits > 30 or (desc_size + info_size) << count_bits > _MAX_RING_BYTES:
        raise DumpFormatError(
            f"{dump.path}: implausible printk ring sizes (count_bits {count_bits}, "
            f"size_bits {size_bits})"
        )
    count, data_size = 1 << count_bits, 1 << size_bits
    descs = read(_u64(rb, dr + need("OFFSET(prb_desc_ring.descs)")), desc_size * count)
    infos = read(_u64(rb, dr + need("OFFSET(prb_desc_ring.infos)")), info_size * count)
    text = read(_u64(rb, tr + need("OFFSET(prb_data_ring.data)")), data_size)
    tail_id = _u64(rb, dr + need("OFFSET(prb_desc_ring.tail_id)") + counter)
    head_id = _u64(rb, dr + need("OFFSET(prb_desc_ring.head_id)") + counter)
    off_sv = need("OFFSET(prb_desc.state_var)") + counter
    off_lpos = need("OFFSET(prb_desc.text_blk_lpos)")
    off_begin = off_lpos + need("OFFSET(prb_data_blk_lpos.begin)")
    off_next = off_lpos + need("OFFSET(prb_data_blk_lpos.next)")
    off_len = need("OFFSET(printk_info.text_len)")
    off_ts = need("OFFSET(printk_info.ts_nsec)")
    off_seq = info.offset("printk_info.seq")
    off_caller = info.offset("printk_info.caller_id")

    ident = tail_id
    for _ in range(count + 1):  # at most one lap: the ids between tail and head
        d = (ident % count) * desc_size
        sv = _u64(descs, d + off_sv)
        state = (sv >> DESC_FLAGS_SHIFT) & 3
        if (sv & DESC_ID_MASK) == ident and state in (DESC_COMMITTED, DESC_FINALIZED):
            begin = _u64(descs, d + off_begin) % data_size
            nxt = _u64(descs, d + off_next) % data_size
            if begin != nxt:  # data-less records (failed or empty) are skipped
                i = (ident % count) * info_size
                if begin > nxt:
                    begin = 0  # a wrapped block's data sits at the start of the ring
                begin += 8  # the block starts with its descriptor id
                text_len = min(_u16(infos, i + off_len), max(0, nxt - begin))
                yield LogRecord(
                    _u64(infos, i + off_ts),
                    text[begin : begin + text_len],
                    None if off_caller is None else _u32(infos, i + off_caller),
                    None if off_seq is None else _u64(infos, i + off_seq),
                    infos[i + off_len + _LEVEL_AFTER_TEXT_LEN] >> 5,
                )
        if ident == head_id:
            break
        ident = (ident + 1) & DESC_ID_MASK


def legacy_records(dump: Dump) -> Iterator[LogRecord]:
    """Records of the 3.5-5.9 ``printk_log`` buffer, oldest first."""
    need = _Layout(dump)
    read = dump.read_virt
    log_buf = _u64(read(need("SYMBOL(log_buf)"), 8), 0)
    buf_len = struct.unpack("<i", read(need("SYMBOL(log_buf_len)"), 4))[0]
    first = _u32(read(need("SYMBOL(log_first_idx)"), 4), 0)
    last = _u32(read(need("SYMBOL(log_next_idx)"), 4), 0)
    hdr = need("SIZE(printk_log)")
    off_len, off_text_len = need("OFFSET(printk_log.len)"), need("OFFSET(printk_log.text_len)")
    off_ts = need("OFFSET(printk_log.ts_nsec)")
    if not 0 < buf_len <= _MAX_RING_BYTES or first >= buf_len or last >= buf_len:
        raise DumpFormatError(f"{dump.path}: implausible log_buf (length {buf_len})")
    buf = read(log_buf, buf_len)
    pos = first
    seen: set[int] = set()
    while pos != last and pos not in seen and 0 <= pos <= buf_len - hdr:
        seen.add(pos)
        rec = pos
        length = _u16(buf, rec + off_len)
        if length == 0:  # end-of-buffer marker: this record is at the start
            rec = 0
            length = _u16(buf, off_len)
            if length == 0:
                break
        text_len = _u16(buf, rec + off_text_len)
        level = buf[rec + off_text_len + _LEGACY_LEVEL_AFTER_TEXT_LEN] >> 5
        yield LogRecord(_u64(buf, rec + off_ts), buf[rec + hdr : rec + hdr + text_len], level=level)
        pos = rec + length


def records(dump: Dump) -> Iterator[LogRecord]:
    """The kernel log records of a dump, whichever ring buffer the kernel had."""
    info = dump.vmcoreinfo
    if info.symbol("prb") is not None:
        reader = lockless_records
    elif info.symbol("log_buf") is not None and info.size("printk_log") is not None:
        reader = legacy_records
    else:
        raise KdumpyError(
            f"{dump.path}: VMCOREINFO describes no kernel log buffer this reader knows"
        )
    try:
        yield from reader(dump)
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        # Offsets or sizes from VMCOREINFO point outside the structures read.
        raise DumpFormatError(f"{dump.path}: inconsistent kernel log structures ({exc})") from None


# makedumpfile prints a byte when isprint() or isspace(), else "\\x%02x" of a signed char
# (so bytes from 0x80 come out sign-extended).  The newline is handled by the caller.
_KEEP = b" \t\v\f\r"
_HIGH = b"\\xffffff%02x"


def format_record(rec: LogRecord, caller_id: bool = False) -> bytes:
    """One record as makedumpfile prints it, with the trailing newline."""
    secs, rem = divmod(rec.ts_nsec, 1_000_000_000)
    prefix = b"[%5d.%06d] " % (secs, rem // 1000)
    if caller_id and rec.caller_id is not None:
        kind = b"C" if rec.caller_id & CALLER_CPU else b"T"
        prefix += b"[%6s] " % (kind + b"%d" % (rec.caller_id & ~CALLER_CPU))
    indent = b"\n" + b" " * len(prefix)
    out = bytearray(prefix)
    for line_no, line in enumerate(rec.text.split(b"\n")):
        if line_no:
            out += indent
        out += escape_bytes(line, _KEEP, _HIGH)
    out += b"\n"
    return bytes(out)


def kernel_log(dump: Dump, caller_id: bool = False) -> bytes:
    """The whole kernel log as ``makedumpfile --dump-dmesg`` writes it."""
    return b"".join(format_record(r, caller_id) for r in records(dump))
