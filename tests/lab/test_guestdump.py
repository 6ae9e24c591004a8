"""The pieces of the QEMU-made lab dumps that run without a guest: the sparse copy out of
a FIFO and the ELF header rewrite makedumpfile needs (its program headers at offset 64)."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from kdumpy.lab.guestdump import CHUNK, EHDR, SparseCopy, phdrs_after_ehdr
from kdumpy.vmcore import open_dump

PHDR = struct.Struct("<IIQQQQQQ")


def test_sparse_copy_leaves_holes_for_zero_mibs(tmp_path: Path) -> None:
    fifo, out = tmp_path / "fifo", tmp_path / "out"
    os.mkfifo(fifo)
    blocks = [b"\x01" * CHUNK, bytes(CHUNK), bytes(CHUNK), b"\x02" * 100 + bytes(CHUNK - 100),
              bytes(CHUNK), b"tail"]  # fmt: skip
    copy = SparseCopy(fifo, out)
    copy.start()

    def feed() -> None:
        with open(fifo, "wb") as f:
            for block in blocks:
                f.write(block)

    writer = threading.Thread(target=feed)
    writer.start()
    writer.join()
    copy.join()
    assert copy.error is None
    data = b"".join(blocks)
    assert out.read_bytes() == data
    assert out.stat().st_mode & 0o777 == 0o600
    # two MiBs written (plus the tail), three left as holes
    assert out.stat().st_blocks * 512 < 3 * CHUNK


def test_unblock_ends_a_copy_qemu_never_started(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    copy = SparseCopy(fifo, tmp_path / "out")
    copy.start()
    copy.unblock()
    copy.join(timeout=10)
    assert not copy.is_alive() and copy.size == 0


def _qemu_like_elf(path: Path) -> bytes:
    """QEMU 7.2's layout: two section headers at 64, program headers at 192, e_ehsize 8;
    a NOTE and one PT_LOAD of two pages."""
    data_off, note_off = 0x1000, 0x300
    note = struct.pack("<III", 5, 4, 1) + b"CORE\0\0\0\0" + b"abcd"
    phdrs = PHDR.pack(4, 0, note_off, 0, 0, len(note), len(note), 0) + PHDR.pack(
        1, 0, data_off, 0, 0, 0x2000, 0x2000, 0
    )
    ehdr = EHDR.pack(b"\x7fELF\x02\x01\x01" + bytes(9), 4, 62, 1, 0, 192, 64, 0, 8, 56, 2, 64,
                     2, 1)  # fmt: skip
    image = bytearray(data_off + 0x2000)
    image[0:64] = ehdr
    image[64:192] = b"\xee" * 128  # the section headers
    image[192 : 192 + len(phdrs)] = phdrs
    image[note_off : note_off + len(note)] = note
    image[data_off:] = b"\x11" * 0x1000 + b"\x22" * 0x1000
    path.write_bytes(image)
    return phdrs


def test_program_headers_moved_after_the_elf_header(tmp_path: Path) -> None:
    path = tmp_path / "vmcore"
    phdrs = _qemu_like_elf(path)
    phdrs_after_ehdr(path)
    raw = path.read_bytes()
    fields = EHDR.unpack_from(raw)
    assert (fields[5], fields[6], fields[8], fields[10], fields[12]) == (64, 0, 64, 2, 0)
    assert raw[64 : 64 + len(phdrs)] == phdrs
    with open_dump(path) as dump:  # and the reader still sees the same memory
        assert dump.read_phys(0, 2) == b"\x11\x11"
        assert dump.read_phys(0x1000, 2) == b"\x22\x22"
