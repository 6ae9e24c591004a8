"""Fast checks of the writers' format arithmetic (no QEMU).

Expected numbers come from makedumpfile 1.7.2's own output header for the 6.1 lab
dump (max_mapnr 262106, notes 4024 bytes -> sub_hdr_size 2, bitmap_blocks 16,
offset_note 4200), and from its -E rule (runs of >= 256 excluded pages split a
PT_LOAD).  The flattened stream is checked by rebuilding it and comparing with the
same writes made directly at their offsets.
"""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kdumpy.collect.elf_output import split_load
from kdumpy.collect.levels import parse_dump_levels
from kdumpy.vmcore.elf_writer import EHDR, PHDR, ElfWriter, Load
from kdumpy.vmcore.flat_writer import FlatSink, rearrange
from kdumpy.vmcore.kdump_writer import KdumpLayout


def test_layout_matches_makedumpfile_header_for_61():
    layout = KdumpLayout(block_size=4096, max_mapnr=262106, size_note=4024, num_dumpable=23041)
    assert layout.sub_hdr_size == 2
    assert layout.bitmap_blocks == 16
    assert layout.offset_note == 4200
    assert layout.offset_bitmap1 == 3 * 4096
    assert layout.offset_data == (3 + 16) * 4096 + 24 * 23041


def test_split_load_at_256_excluded_pages():
    keep = np.ones(1000, dtype=bool)
    keep[100:355] = False  # 255 excluded: stays inside the load, copied
    keep[500:756] = False  # 256 excluded: the load is cut here
    assert split_load(keep.tobytes()) == [(0, 500, 756), (756, 244, 244)]
    keep = np.ones(1000, dtype=bool)
    keep[700:] = False  # a trailing long run only extends p_memsz
    assert split_load(keep.tobytes()) == [(0, 700, 1000)]
    keep[900:] = True  # ...a short one is copied
    assert split_load(keep.tobytes()) == [(0, 1000, 1000)]
    keep[997:] = False  # ...unless it ends the load (5.10's kernel-text PT_LOAD ends so)
    assert split_load(keep.tobytes()) == [(0, 997, 1000)]
    keep[:] = False  # nothing kept: a header without data
    assert split_load(keep[:100].tobytes()) == [(0, 0, 100)]


def test_elf_offsets_of_loads_without_data():
    """makedumpfile: a piece cut off by a long excluded run and holding no data gets
    p_offset 0; the last piece of a source PT_LOAD keeps the running offset even empty."""
    sink = _Positioned()
    elf = ElfWriter(sink, 4096, b"notes")
    elf.write_headers([
        Load(0, 0, 0, 256 * 4096, last=False),  # the load starts with 256 excluded pages
        Load(256 * 4096, 0, 4096, 4096),
        Load(1 << 20, 0, 0, 100 * 4096),  # a small load with every page excluded
    ])  # fmt: skip
    data = EHDR.size + 4 * PHDR.size + len(b"notes")
    offsets = [PHDR.unpack_from(sink.buf, EHDR.size + PHDR.size * i)[2] for i in (1, 2, 3)]
    assert offsets == [0, data, data + 4096]


def test_dump_level_lists():
    assert parse_dump_levels("11,31") == [11, 31]


class _Positioned:
    def __init__(self) -> None:
        self.buf = bytearray()

    def write_at(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if len(self.buf) < end:
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[offset:end] = data

    def writev_at(self, offset: int, parts: list[bytes]) -> None:
        self.write_at(offset, b"".join(parts))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=5000)),
                min_size=1, max_size=20))  # fmt: skip
def test_flattened_stream_rebuilds_positioned_writes(writes):
    stream = io.BytesIO()
    flat = FlatSink(stream)
    direct = _Positioned()
    for offset, data in writes:
        flat.write_at(offset, data)
        direct.write_at(offset, data)
    flat.finish()
    assert stream.getvalue()[:12] == b"makedumpfile"
    rebuilt = _Positioned()
    size = rearrange(io.BytesIO(stream.getvalue()), rebuilt)
    assert size == len(direct.buf)
    assert rebuilt.buf == direct.buf
