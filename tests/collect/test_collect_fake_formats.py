"""Every output format from a hand-built vmcore (fakecore), byte for byte against
makedumpfile on the same input, in milliseconds instead of a lab guest's minutes.

The machine has RAM with a hole, pages of known content, zero pages alone, in short
runs and in long ones (makedumpfile's ELF output cuts a PT_LOAD only at 256 or more
excluded pages), and a range that ends in zero pages.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakecore import MEMMAP_PADDR, PAGE, FakeMachine, mixed_vmcore

pytestmark = pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="no makedumpfile")


def kdumpy(*args: str) -> subprocess.CompletedProcess[bytes]:
    level = [] if "--message-level" in args else ["--message-level", "0"]
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", *level, *args],
                          capture_output=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def makedumpfile(*args: str) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["makedumpfile", "--message-level", "0", *args], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_vmcore(tmp_path_factory.mktemp("fake") / "vmcore")


@pytest.mark.parametrize("args", [["-E", "-d", "1"], ["-E", "-d", "0"], ["-l", "-d", "1"],
                                  ["-c", "-d", "0"], ["-d", "1"]])  # fmt: skip
def test_same_file_as_makedumpfile(vmcore: Path, tmp_path: Path, args: list[str]) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    kdumpy(*args, str(vmcore), str(ours))
    makedumpfile(*args, str(vmcore), str(theirs))
    assert ours.read_bytes() == theirs.read_bytes()


def test_flattened_stream_rebuilds_as_makedumpfiles_file(vmcore: Path, tmp_path: Path) -> None:
    """The stream's records may be cut differently; ``makedumpfile -R`` must rebuild the
    very file makedumpfile writes directly."""
    stream = kdumpy("-F", "-l", "-d", "1", str(vmcore)).stdout
    rebuilt, theirs = tmp_path / "rebuilt", tmp_path / "theirs"
    subprocess.run(["makedumpfile", "-R", str(rebuilt)], input=stream, check=True,
                   capture_output=True)  # fmt: skip
    makedumpfile("-l", "-d", "1", str(vmcore), str(theirs))
    assert rebuilt.read_bytes() == theirs.read_bytes()


def test_split_files_same_as_makedumpfile(vmcore: Path, tmp_path: Path) -> None:
    ours = [tmp_path / f"k{i}" for i in range(3)]
    theirs = [tmp_path / f"m{i}" for i in range(3)]
    args = ["--split", "--splitblock-size", "1024", "-l", "-d", "1", str(vmcore)]
    kdumpy(*args, *map(str, ours))
    makedumpfile(*args, *map(str, theirs))
    for a, b in zip(ours, theirs, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.fixture(scope="module")
def vmcore_with_page_kinds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5.10-era machine whose struct pages say free, cache, user, hugetlb, slab, offline."""
    from test_classify_rules import ERAS, Pages

    machine = FakeMachine()
    machine.info.update({k: str(v) for k, v in ERAS["5.10"].items()})
    kinds = Pages("5.10", 2048)
    kinds.free(1600, 3)
    kinds.cache(1700)
    kinds.cache(1701, private=True)
    kinds.anon(1702)
    kinds.swapcache(1704)
    kinds.hugetlb(1712, 3)
    kinds.offline(1720)
    kinds.free(1728, 5)
    machine.put(MEMMAP_PADDR, kinds.raw[:2048].tobytes())
    for pfn in range(1600, 1780):
        machine.put(pfn * PAGE, b"data %d" % pfn)
    return machine.write(tmp_path_factory.mktemp("kinds") / "vmcore")


def report(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    """The page counts of a --message-level 16 report (both tools print these lines)."""
    lines = proc.stderr.decode().splitlines() + proc.stdout.decode().splitlines()
    return [line.strip() for line in lines if " pages" in line and ": 0x" in line]


@pytest.mark.parametrize("level", ["31", "1", "2", "4", "8", "16", "11"])
def test_dump_levels_same_as_makedumpfile(vmcore_with_page_kinds: Path, tmp_path: Path,
                                          level: str) -> None:  # fmt: skip
    """Struct pages read through the vmemmap page tables, classified, counted and written
    as makedumpfile does it."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    vmcore = str(vmcore_with_page_kinds)
    ours_report = report(kdumpy("--message-level", "16", "-l", "-d", level, vmcore, str(ours)))
    mdf = ["makedumpfile", "--message-level", "16", "-l", "-d", level, vmcore, str(theirs)]
    theirs_report = report(subprocess.run(mdf, capture_output=True))
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours_report == theirs_report and len(ours_report) == 10


@pytest.fixture(scope="module")
def vmcore_32m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 MiB: four of the collector's thread jobs (THREAD_BATCH, 8 MiB), some dense with
    data, some sparse, one all zero, and a hole across a job's edge."""
    machine = FakeMachine(pages=8192, holes=((4000, 4200),))
    pfns = (*range(1550, 2600), *range(2600, 4000, 7), *range(6144, 8192, 2))
    for pfn in pfns:
        machine.put(pfn * PAGE, pfn.to_bytes(4, "little") * (64 + pfn % 900))
    return machine.write(tmp_path_factory.mktemp("fake32") / "vmcore")


@pytest.mark.parametrize("flag", ["-l", "-c"])
def test_threads_write_makedumpfiles_file(vmcore_32m: Path, tmp_path: Path, flag: str) -> None:
    """Worker threads read and compress whole jobs; the file is still makedumpfile's,
    from an ELF input (workers read it) and from a kdump-compressed one (read here)."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    kdumpy(flag, "-d", "1", "--num-threads", "3", str(vmcore_32m), str(ours))
    makedumpfile(flag, "-d", "1", str(vmcore_32m), str(theirs))
    assert ours.read_bytes() == theirs.read_bytes()
    # makedumpfile finds no free-page handler in this machine for -d 16: recompress at -d 1
    other = "-c" if flag == "-l" else "-l"
    refiltered, theirs_refiltered = tmp_path / "refiltered", tmp_path / "theirs_refiltered"
    kdumpy(other, "-d", "1", "--num-threads", "2", str(theirs), str(refiltered))
    makedumpfile(other, "-d", "1", str(theirs), str(theirs_refiltered))
    assert refiltered.read_bytes() == theirs_refiltered.read_bytes()
