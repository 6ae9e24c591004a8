"""vmlinux and System.map beside a dump: told apart by content, read, and matched.

The vmlinux here is a small static executable linked by gcc with the symbols a kernel
has (``_stext``, ``linux_banner``, ``init_uts_ns``) and a GNU build id; binutils' ``nm``
and ``readelf`` are the oracles for what it holds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.analysis.symfile import (
    DUMP,
    SYSTEM_MAP,
    VMLINUX,
    check_match,
    classify,
    load_system_map,
    load_vmlinux,
)
from kdumpy.errors import KdumpyError
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

SOURCE = r"""
const char linux_banner[] = "Linux version 9.9.9-test (kdumpy) #1 SMP\n";
char init_uts_ns[432];
static int local_counter;
__attribute__((weak)) void weak_hook(void) {}
void _stext(void) { local_counter++; }
void _start(void) { _stext(); for (;;) {} }
"""


@pytest.fixture(scope="module")
def vmlinux(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    d = tmp_path_factory.mktemp("vmlinux")
    (d / "k.c").write_text(SOURCE)
    out = d / "vmlinux"
    subprocess.run(
        [
            "gcc",
            "-static",
            "-nostdlib",
            "-O1",
            "-Wl,--build-id=sha1",
            "-o",
            str(out),
            str(d / "k.c"),
        ],
        check=True,
    )
    return out


def nm(path: Path) -> dict[str, tuple[int, str]]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {n: (int(a, 16), t) for a, t, n in (line.split() for line in out.splitlines())}


def build_id(path: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True).stdout
    match = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert match
    return match.group(1)


def info(
    offset: int, stext: int, build: str | None = None, release: str = "9.9.9-test"
) -> VmcoreInfo:
    lines = [f"OSRELEASE={release}", f"SYMBOL(_stext)={stext:x}", f"KERNELOFFSET={offset:x}"]
    if build:
        lines.append(f"BUILD-ID={build}")
    return VmcoreInfo("\n".join(lines) + "\n", "vmcore")


def test_files_are_told_apart_by_content(tmp_path, vmlinux):
    core = tmp_path / "a"
    core.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x04\x00" + b"\0" * 100)
    compressed = tmp_path / "b"
    compressed.write_bytes(b"KDUMP   " + b"\0" * 100)
    flat = tmp_path / "c"
    flat.write_bytes(b"makedumpfile\0" + b"\0" * 100)
    smap = tmp_path / "d"
    smap.write_text("ffffffff81000000 T _stext\nffffffff81000000 T _text\n")
    other = tmp_path / "e"
    other.write_text("hello\n")
    assert [classify(str(p)) for p in (core, compressed, flat, vmlinux, smap)] == [
        DUMP, DUMP, DUMP, VMLINUX, SYSTEM_MAP,
    ]  # fmt: skip
    with pytest.raises(KdumpyError, match=r"e: not a dump, a vmlinux or a System.map"):
        classify(str(other))


def test_vmlinux_symbols_match_nm(vmlinux):
    sf = load_vmlinux(str(vmlinux))
    theirs = nm(vmlinux)
    ours = {n: (int(a), t) for n, t, a in zip(sf.names, sf.types, sf.addresses, strict=True)}
    for name in ("linux_banner", "init_uts_ns", "_stext", "local_counter", "weak_hook"):
        assert ours[name] == theirs[name], name
    assert sf.build_id == build_id(vmlinux)
    assert sf.release == "9.9.9-test"


def test_matching_vmlinux_is_relocated_by_kaslr(vmlinux):
    sf = load_vmlinux(str(vmlinux))
    stext = sf.address("_stext")
    assert stext is not None
    check_match(sf, info(0x2A00000, stext + 0x2A00000, sf.build_id))


def test_mismatched_vmlinux_is_refused_in_one_line(vmlinux):
    sf = load_vmlinux(str(vmlinux))
    stext = sf.address("_stext")
    assert stext is not None
    with pytest.raises(KdumpyError) as err:
        check_match(sf, info(0, stext, "ab" * 20, "5.10.0-32-cloud-amd64"))
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{vmlinux} (9.9.9-test) does not match vmcore (5.10.0-32-cloud-amd64)" in msg
    assert "build id" in msg and "--force" in msg
    check_match(sf, info(0, stext, "ab" * 20), force=True)
    # Without build ids, the addresses VMCOREINFO gives decide.
    with pytest.raises(KdumpyError, match="_stext at"):
        check_match(sf, info(0x1000, stext))


def test_system_map_is_read_and_checked(tmp_path):
    smap = tmp_path / "System.map-5.10.0-32-cloud-amd64"
    smap.write_text(
        "0000000000000000 D fixed_percpu_data\n"
        "0000000000033440 D runqueues\n"
        "ffffffff81000000 T _stext\n"
        "ffffffff82613700 D init_uts_ns\n"
    )
    sf = load_system_map(str(smap))
    assert sf.release == "5.10.0-32-cloud-amd64"
    offset = 0x39200000
    moved = dict(zip(sf.names, sf.relocated(offset).tolist(), strict=True))
    assert moved == {
        "fixed_percpu_data": 0,
        "runqueues": 0x33440,  # per-CPU offsets do not move with KASLR
        "_stext": 0xFFFFFFFFBA200000,
        "init_uts_ns": 0xFFFFFFFFBB813700,
    }
    check_match(sf, info(offset, 0xFFFFFFFFBA200000, "cd" * 20))  # no build id in a map
    with pytest.raises(KdumpyError, match=r"System.map-5.10.0-32-cloud-amd64 \(5.10.0-32-cloud"):
        check_match(sf, info(offset, 0xFFFFFFFFBA400000))


def test_bad_system_map_line_is_named(tmp_path):
    smap = tmp_path / "System.map"
    smap.write_text("ffffffff81000000 T _stext\nnonsense\n")
    with pytest.raises(KdumpyError, match=r"System.map:2: not a System.map line"):
        load_system_map(str(smap))


def test_system_map_address_beyond_64_bits_is_refused(tmp_path):
    smap = tmp_path / "System.map"
    smap.write_text("ffffffff81000000 T _stext\n1ffffffff81000000 T _etext\n")
    with pytest.raises(KdumpyError, match=r"System.map:2: bad address"):
        load_system_map(str(smap))
