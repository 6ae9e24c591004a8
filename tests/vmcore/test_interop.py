"""kdumpy reads makedumpfile's outputs byte-identically to the source ELF vmcore.

Every page makedumpfile kept is compared (numpy, all pages, not a sample); pages it
dropped must read as absent.  The snappy and zstd readers are checked on files
transcoded from makedumpfile's zlib output (makedumpfile 1.7.2 here is built without
snappy and zstd), with drgn's libkdumpfile as a second, independent reader.
"""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import cramjam
import pytest
import zstandard

from kdumpy.vmcore import open_dump
from kdumpy.vmcore.compression import COMPRESSED_SNAPPY, COMPRESSED_ZLIB, COMPRESSED_ZSTD
from kdumpy.vmcore.diskdump_format import PAGE_DESC

from .helpers import assert_same_pages

pytestmark = pytest.mark.vm


@pytest.mark.parametrize(
    ("flag", "fmt"),
    [("-c", "kdump"), ("-l", "kdump"), ("-p", "kdump"), ("-z", "kdump"), ("", "kdump")],
)
def test_compressed(lab_dump, mdf, flag: str, fmt: str) -> None:  # noqa: ANN001
    args = [flag, "-d", "31"] if flag else ["-d", "31"]
    (out,) = mdf(lab_dump.vmcore, f"kdump{flag or '-raw'}-d31", args)
    with open_dump(out) as dump:
        assert dump.format == fmt
        assert dump.dump_level == 31
        wanted = {"-c": "zlib", "-l": "lzo", "-p": "snappy", "-z": "zstd", "": "none"}[flag]
        if dump.compression != wanted:
            # makedumpfile silently writes uncompressed pages when built without it.
            assert dump.compression == "none", dump.compression
    kept = assert_same_pages(lab_dump.vmcore, out)
    # Against the source's own RAM: -d 31 keeps far fewer pages than exist.
    with open_dump(lab_dump.vmcore) as src:
        assert kept < sum(e - s for s, e in src.ram_ranges())


@pytest.mark.slow
def test_level_zero_keeps_everything(lab_dump, mdf) -> None:  # noqa: ANN001
    (out,) = mdf(lab_dump.vmcore, "kdump-l-d0", ["-l", "-d", "0"])
    with open_dump(lab_dump.vmcore) as src, open_dump(out) as dump:
        assert dump.ram_ranges() == src.ram_ranges()
        assert dump.pfn_ranges() == src.pfn_ranges()
    assert_same_pages(lab_dump.vmcore, out)


def test_flattened_kdump(lab_dump, mdf) -> None:  # noqa: ANN001
    (out,) = mdf(lab_dump.vmcore, "flat-l-d31", ["-F", "-l", "-d", "31"])
    with open_dump(out) as dump:
        assert dump.format == "flattened-kdump"
    assert_same_pages(lab_dump.vmcore, out)


def test_flattened_elf(lab_dump, mdf) -> None:  # noqa: ANN001
    (out,) = mdf(lab_dump.vmcore, "flat-E-d31", ["-F", "-E", "-d", "31"])
    (plain,) = mdf(lab_dump.vmcore, "elf-E-d31", ["-E", "-d", "31"])
    with open_dump(out) as dump, open_dump(plain) as ref:
        assert dump.format == "flattened-elf"
        assert dump.pfn_ranges() == ref.pfn_ranges()
    assert_same_pages(lab_dump.vmcore, out)


def test_filtered_elf(lab_dump, mdf) -> None:  # noqa: ANN001
    (out,) = mdf(lab_dump.vmcore, "elf-E-d31", ["-E", "-d", "31"])
    with open_dump(out) as dump:
        assert dump.format == "elf"
    assert_same_pages(lab_dump.vmcore, out)


def test_split_set(lab_dump, mdf) -> None:  # noqa: ANN001
    # A small splitblock so every file gets pages (1 GiB default gives one huge file).
    args = ["-l", "-d", "1", "--split", "--splitblock-size", "65536"]
    outs = mdf(lab_dump.vmcore, "split-l-d1", args, outputs=3)
    with open_dump(outs) as dump:
        assert dump.format == "kdump-split"
        assert len(dump.parts) == 3
        assert all(p.end_pfn > p.start_pfn for p in dump.parts)
    assert_same_pages(lab_dump.vmcore, outs)
    # Order of the list does not matter.
    with open_dump(outs[::-1]) as dump:
        assert dump.parts[0].start_pfn == 0


def _transcode(src: Path, dst: Path, flag: int) -> None:
    """Rewrite a makedumpfile -c file with each page recompressed by snappy or zstd
    (same header and bitmaps; descriptors and data re-laid).  Test-made input: no tool
    here writes these compressions."""
    shutil.copyfile(src, dst)
    with open_dump(src) as dump:
        part = dump.parts[0]
        descs = part.descs.copy()
        data_start = int(part.desc_offset + descs.size * PAGE_DESC.size)
        raw = src.read_bytes()
        blobs = []
        pos = data_start
        zc = zstandard.ZstdCompressor(level=1)
        for i, rec in enumerate(descs):
            blob = raw[rec["offset"] : rec["offset"] + rec["size"]]
            if rec["flags"] == COMPRESSED_ZLIB:
                page = zlib.decompress(blob)
                blob = zc.compress(page) if flag == COMPRESSED_ZSTD else bytes(
                    cramjam.snappy.compress_raw(page))  # fmt: skip
                descs[i]["flags"] = flag if len(blob) < 4096 else 0
                if not descs[i]["flags"]:
                    blob = page
            descs[i]["offset"], descs[i]["size"] = pos, len(blob)
            blobs.append(blob)
            pos += len(blob)
        header = bytearray(raw[:data_start])
        status_at = 0x1A8
        header[status_at : status_at + 4] = flag.to_bytes(4, "little")
        header[part.desc_offset : data_start] = descs.tobytes()
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(bytes(header) + b"".join(blobs))
    tmp.rename(dst)


@pytest.mark.slow
@pytest.mark.parametrize("flag", [COMPRESSED_SNAPPY, COMPRESSED_ZSTD], ids=["snappy", "zstd"])
def test_transcoded_snappy_zstd(lab_dump, mdf, drgn_prog, tmp_path, flag: int) -> None:  # noqa: ANN001
    (zfile,) = mdf(lab_dump.vmcore, "kdump-c-d31", ["-c", "-d", "31"])
    out = tmp_path / "transcoded"
    _transcode(zfile, out, flag)
    with open_dump(out) as dump:
        assert dump.compression == {COMPRESSED_SNAPPY: "snappy", COMPRESSED_ZSTD: "zstd"}[flag]
        assert (dump.parts[0].descs["flags"] == flag).sum() > 1000
        prog = drgn_prog(out)
        for start, end in dump.pfn_ranges()[:20]:
            for pfn in range(start, min(end, start + 50)):
                assert dump.read_pfn(pfn) == prog.read(pfn << 12, 4096, True)
    assert_same_pages(lab_dump.vmcore, out)


def test_incomplete_dump(lab_dump, tmp_path) -> None:  # noqa: ANN001
    """makedumpfile -L cuts the dump at a size limit, zeroes the descriptors of pages it
    could not write and sets the incomplete flag; what was written stays readable."""
    out = tmp_path / "limited"
    subprocess.run(
        ["makedumpfile", "-l", "-d", "31", "-L", "5M", str(lab_dump.vmcore), str(out)],
        capture_output=True,
    )  # exits non-zero by design ("incomplete dumpfile")
    assert out.stat().st_size <= 5 << 20
    with open_dump(out) as dump:
        assert dump.incomplete
        kept = sum(e - s for s, e in dump.pfn_ranges())
        assert 0 < kept < dump.parts[0].descs.size
    assert_same_pages(lab_dump.vmcore, out, min_pages=100)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_older_header_versions(lab_dump, mdf, tmp_path, version: int) -> None:  # noqa: ANN001
    """The same file relabelled with an older header version: fields that version lacks
    (notes v4, VMCOREINFO v3, 64-bit pfns v6) are ignored and pages still read right."""
    (src,) = mdf(lab_dump.vmcore, "kdump-l-d31", ["-l", "-d", "31"])
    raw = bytearray(src.read_bytes())
    raw[8:12] = version.to_bytes(4, "little")
    out = tmp_path / f"v{version}"
    out.write_bytes(bytes(raw))
    with open_dump(out) as dump:
        assert dump.header.header_version == version
        assert dump.has_vmcoreinfo == (version >= 3)
        assert bool(dump.prstatus) == (version >= 4)
    assert_same_pages(lab_dump.vmcore, out, check_vmcoreinfo=version >= 3)
