"""On-disk structures of the kdump-compressed format (makedumpfile ``diskdump_mod.h``).

The 64-bit little-endian layout (x86_64, arm64): ``disk_dump_header`` (464 bytes) at 0,
``kdump_sub_header`` (104 bytes) at ``block_size``, then the copied ELF notes, the two
bitmaps, the page descriptors (24 bytes each) and the page data.  Sub-header fields
appeared version by version (split v2, VMCOREINFO v3, notes v4, eraseinfo v5,
64-bit pfns v6); older versions leave them unset.
"""

import struct
from typing import NamedTuple

from kdumpy.arch.select import from_uname
from kdumpy.errors import DumpFormatError

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
DISK_DUMP_HEADER = struct.Struct("<8si390s6xqqIiiIIIIIIi")
KDUMP_SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")
# page_desc_t: offset, size, flags, page_flags (diskdump.py reads them as a numpy dtype)
PAGE_DESC = struct.Struct("<qIIQ")
PAGE_DESC_SIZE = PAGE_DESC.size
MAX_HEADER_VERSION = 6
# block_size is the page size: Linux has none above 64 KiB (arm64, ppc64).  Every page
# read allocates one, so a larger claim would multiply memory per input byte.
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 512, 1 << 16


class DiskDumpHeader(NamedTuple):
    """``struct disk_dump_header``: the first block of the file."""

    signature: bytes
    header_version: int
    utsname: tuple[str, ...]  # sysname nodename release version machine domainname
    timestamp: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    nr_cpus: int

    @property
    def release(self) -> str:
        return self.utsname[2]

    @property
    def machine(self) -> str:
        return self.utsname[4]


class KdumpSubHeader(NamedTuple):
    """``struct kdump_sub_header`` (fields absent in older header versions are 0)."""

    phys_base: int = 0
    dump_level: int = 0
    split: int = 0
    start_pfn: int = 0
    end_pfn: int = 0
    offset_vmcoreinfo: int = 0
    size_vmcoreinfo: int = 0
    offset_note: int = 0
    size_note: int = 0
    offset_eraseinfo: int = 0
    size_eraseinfo: int = 0
    max_mapnr: int = 0  # max_mapnr_64 (v6), else 0


def parse_disk_dump_header(data: bytes, path: str) -> DiskDumpHeader:
    """Decode and sanity-check the main header."""
    if len(data) < DISK_DUMP_HEADER.size:
        raise DumpFormatError(f"{path}: kdump header is truncated ({len(data)} bytes)")
    fields = DISK_DUMP_HEADER.unpack_from(data)
    sig, version, uts, tv_sec, _tv_usec, status, block_size, sub_hdr_size = fields[:8]
    bitmap_blocks, max_mapnr, nr_cpus = fields[8], fields[9], fields[14]
    if sig not in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
        raise DumpFormatError(f"{path}: not a kdump-compressed file (signature {sig!r})")
    names = tuple(
        uts[i * 65 : (i + 1) * 65].split(b"\0", 1)[0].decode("ascii", "replace") for i in range(6)
    )
    # The machine first: another machine's header (s390x is big-endian, i386 32-bit)
    # would fail the checks below for reasons that do not say what is wrong.
    from_uname(names[4], path)
    if not 0 <= version <= 64:
        raise DumpFormatError(f"{path}: impossible kdump header version {version}")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise DumpFormatError(f"{path}: impossible kdump block size {block_size}")
    if sub_hdr_size < 0 or sub_hdr_size > 1 << 20:
        raise DumpFormatError(f"{path}: impossible kdump sub-header size {sub_hdr_size} blocks")
    return DiskDumpHeader(
        sig, version, names, tv_sec, status, block_size, sub_hdr_size, bitmap_blocks,
        max_mapnr, nr_cpus,
    )  # fmt: skip


def parse_sub_header(data: bytes, version: int, path: str) -> KdumpSubHeader:
    """Decode ``kdump_sub_header``, keeping only the fields this header version has."""
    if version < 1:
        return KdumpSubHeader()
    need = KDUMP_SUB_HEADER.size if version >= 6 else 0x10
    if len(data) < need:
        raise DumpFormatError(f"{path}: kdump sub-header is truncated")
    data = bytes(data[: KDUMP_SUB_HEADER.size]).ljust(KDUMP_SUB_HEADER.size, b"\0")
    (phys_base, dump_level, split, start, end, off_vi, size_vi, off_note, size_note,
     off_erase, size_erase, start64, end64, max64) = KDUMP_SUB_HEADER.unpack(data)  # fmt: skip
    if version < 2:
        split = start = end = 0
    if version < 3:
        off_vi = size_vi = 0
    if version < 4:
        off_note = size_note = 0
    if version < 5:
        off_erase = size_erase = 0
    if version >= 6:
        start, end = start64, end64
    else:
        max64 = 0
    return KdumpSubHeader(
        phys_base, dump_level, split, start, end, off_vi, size_vi, off_note, size_note,
        off_erase, size_erase, max64,
    )  # fmt: skip
