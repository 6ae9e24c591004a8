"""Other tools read what kdumpy collect writes, on real dumps of every lab kernel.

* drgn 0.3.0 (bundled libkdumpfile) opens kdumpy's kdump-compressed, flattened and
  ELF output, and every page kdumpy kept reads back byte-identical to the source
  vmcore (both read through drgn, all kept pages, not a sample).
* makedumpfile 1.7.2 reads kdumpy's output: ``--dump-dmesg`` gives the same log as
  from the source, and re-filtering kdumpy's ``-d 1`` dump to ``-d 31`` keeps the
  same pages as filtering the source directly.
* ``crash --osrelease`` names the crashed kernel's release.
* On 6.1, which makedumpfile 1.7.2 handles, kdumpy's files are byte-identical to
  makedumpfile's (lzo, zlib, ELF, flattened stream rebuilt with ``-R``, split set);
  on 5.10 too (lzo, zlib, ELF), whose VMCOREINFO lacks the utsname offset.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from collect_oracle import compare_pages, drgn_program, read_kdump, run_kdumpy

pytestmark = pytest.mark.vm  # real lab dumps (made in QEMU on first use)

COMPRESSIONS = {"-l": "lzo", "-c": "zlib", "-z": "zstd", "-p": "snappy"}


def _libkdumpfile_has(flag: str, vmcore: Path, out: Path) -> bool:
    """Whether drgn's bundled libkdumpfile can decompress this format (it is optional)."""
    import drgn

    try:
        drgn_program(out).read(0x1000000, 4096, True)
    except drgn.FaultError:
        return True  # page excluded: the format itself opened
    except Exception as exc:  # noqa: BLE001 - libkdumpfile reports unsupported methods as errors
        if "compress" in str(exc).lower() or "unsupported" in str(exc).lower():
            return False
        raise
    return True


@pytest.mark.parametrize("flag", ["-l", "-c", "-z", "-p"])
def test_drgn_reads_every_kept_page(lab_dump, flag, kdumpy_out):
    vmcore = Path(lab_dump.vmcore)
    out = kdumpy_out(vmcore, [flag, "-d", "31"])
    if not _libkdumpfile_has(flag, vmcore, out):
        pytest.skip(f"drgn's libkdumpfile is built without {COMPRESSIONS[flag]}")
    kept = read_kdump(out).bitmap2
    assert compare_pages(out, vmcore, kept) == int(kept.sum()) > 1000


def test_drgn_reads_flattened_and_level_1(lab_dump, kdumpy_out):
    vmcore = Path(lab_dump.vmcore)
    flat = kdumpy_out(vmcore, ["-F", "-l", "-d", "1"])
    assert flat.read_bytes()[:12] == b"makedumpfile"
    rebuilt = flat.with_name(flat.name + ".R")
    with open(flat, "rb") as stdin:
        proc = run_kdumpy("-R", str(rebuilt), stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    kept = read_kdump(rebuilt).bitmap2
    # Level 1 keeps every non-zero page: most of the guest's RAM.
    assert compare_pages(flat, vmcore, kept) == int(kept.sum()) > 100_000


def test_drgn_reads_elf_output(lab_dump, kdumpy_out):
    vmcore = Path(lab_dump.vmcore)
    out = kdumpy_out(vmcore, ["-E", "-d", "31"])
    reference = kdumpy_out(vmcore, ["-l", "-d", "31"])
    kept = read_kdump(reference).bitmap2
    prog = drgn_program(out)
    # ELF output drops zero pages too; every non-zero kept page must be there.
    sample = np.flatnonzero(kept)
    present = 0
    src = drgn_program(vmcore)
    for pfn in sample.tolist():
        want = src.read(pfn * 4096, 4096, True)
        if want == bytes(4096):
            continue
        assert prog.read(pfn * 4096, 4096, True) == want, f"page {pfn:#x} differs"
        present += 1
    assert present > 1000


def _mdf_dmesg(dump: Path, tmp: Path) -> bytes:
    out = tmp / f"dmesg-{dump.name}"
    proc = subprocess.run(["makedumpfile", "--dump-dmesg", str(dump), str(out)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"makedumpfile 1.7.2 cannot read this kernel's log: {proc.stderr[-200:]}")
    return out.read_bytes()


def test_makedumpfile_dump_dmesg(lab_dump, kdumpy_out, tmp_path):
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    vmcore = Path(lab_dump.vmcore)
    want = _mdf_dmesg(vmcore, tmp_path)
    assert b"sysrq" in want.lower()
    for args in (["-l", "-d", "31"], ["-c", "-d", "31"]):
        assert _mdf_dmesg(kdumpy_out(vmcore, args), tmp_path) == want


def test_makedumpfile_refilters_kdumpy_output(lab_dump, kdumpy_out, makedumpfile_out, tmp_path):
    vmcore = Path(lab_dump.vmcore)
    level1 = kdumpy_out(vmcore, ["-l", "-d", "1"])
    out = tmp_path / "refiltered"
    proc = subprocess.run(["makedumpfile", "-l", "-d", "31", str(level1), str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    direct = makedumpfile_out(vmcore, ["-l", "-d", "31"])
    assert np.array_equal(read_kdump(out).bitmap2, read_kdump(direct).bitmap2)
    assert read_kdump(out).dump_level == 31


def test_kdumpy_refilters_to_a_higher_level(lab_dump, kdumpy_out, tmp_path):
    vmcore = Path(lab_dump.vmcore)
    level1 = kdumpy_out(vmcore, ["-l", "-d", "1"])
    out = tmp_path / "refiltered"
    proc = run_kdumpy("-l", "-d", "30", str(level1), str(out))
    assert proc.returncode == 0, proc.stderr
    refiltered = read_kdump(out)
    direct = read_kdump(kdumpy_out(vmcore, ["-l", "-d", "31"]))
    assert refiltered.dump_level == 31  # 30 | the input's 1, as makedumpfile does
    assert np.array_equal(refiltered.bitmap2, direct.bitmap2)
    assert compare_pages(out, vmcore, refiltered.bitmap2) > 1000


def test_crash_osrelease(lab_dump, kdumpy_out):
    if shutil.which("crash") is None:
        pytest.skip("crash is not installed")
    vmcore = Path(lab_dump.vmcore)
    for args in (["-l", "-d", "31"], ["-c", "-d", "31"]):
        proc = subprocess.run(["crash", "--osrelease", str(kdumpy_out(vmcore, args))],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.stdout.strip() == lab_dump.kernel.release, proc.stderr


@pytest.mark.parametrize("args", [["-l", "-d", "31"], ["-c", "-d", "31"], ["-l", "-d", "0"],
                                  ["-E", "-d", "31"], ["-l", "-d", "17"]])  # fmt: skip
def test_byte_identical_to_makedumpfile_on_61(lab_dump_61, args, kdumpy_out, makedumpfile_out):
    vmcore = Path(lab_dump_61.vmcore)
    ours = kdumpy_out(vmcore, args)
    theirs = makedumpfile_out(vmcore, args)
    assert ours.read_bytes() == theirs.read_bytes()


def test_flattened_stream_rebuilds_identically_on_61(lab_dump_61, kdumpy_out, makedumpfile_out,
                                                     tmp_path):  # fmt: skip
    vmcore = Path(lab_dump_61.vmcore)
    flat = kdumpy_out(vmcore, ["-F", "-c", "-d", "31"])
    by_mdf = tmp_path / "by-makedumpfile-R"
    with open(flat, "rb") as stdin:
        proc = subprocess.run(["makedumpfile", "-R", str(by_mdf)], stdin=stdin,
                              capture_output=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert by_mdf.read_bytes() == makedumpfile_out(vmcore, ["-c", "-d", "31"]).read_bytes()


def test_split_and_reassemble_on_61(lab_dump_61, kdumpy_out, tmp_path):
    vmcore = Path(lab_dump_61.vmcore)
    ours = [tmp_path / f"k{i}" for i in range(3)]
    theirs = [tmp_path / f"m{i}" for i in range(3)]
    args = ["--split", "--splitblock-size", "65536", "-l", "-d", "31"]
    assert run_kdumpy(*args, str(vmcore), *map(str, ours)).returncode == 0
    proc = subprocess.run(["makedumpfile", *args, str(vmcore), *map(str, theirs)],
                          capture_output=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for a, b in zip(ours, theirs, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs from makedumpfile's"
    joined = tmp_path / "joined"
    assert run_kdumpy("--reassemble", *map(str, ours), str(joined)).returncode == 0
    assert joined.read_bytes() == kdumpy_out(vmcore, ["-l", "-d", "31"]).read_bytes()


@pytest.fixture(scope="module")
def lab_dump_510():
    """Debian 11's 5.10: VMCOREINFO without OFFSET(uts_namespace.name) (issue 10)."""
    from kdumpy.lab.dumps import lab_dump as make

    return make("5.10")


@pytest.mark.parametrize("args", [["-l", "-d", "31"], ["-c", "-d", "31"], ["-E", "-d", "31"]])
def test_byte_identical_to_makedumpfile_on_510(lab_dump_510, args, kdumpy_out, makedumpfile_out):
    """The header's utsname comes from init_uts_ns + 4 as makedumpfile's does, and drgn
    (libkdumpfile, which refuses an empty utsname) opens the file."""
    vmcore = Path(lab_dump_510.vmcore)
    ours = kdumpy_out(vmcore, args)
    assert ours.read_bytes() == makedumpfile_out(vmcore, args).read_bytes()
    assert drgn_program(ours).platform is not None
