"""Options that must not change the dump: threads, cycle size, kdump.conf leftovers.

* ``--num-threads N`` compresses on a pool but writes in pfn order: the file is
  byte-identical to the single-threaded one.
* ``--cyclic-buffer 1`` (1 KiB: 8192 pfns per cycle) forces the low-memory path where
  the 2nd bitmap is recomputed cycle by cycle and free/compound blocks run across
  cycle boundaries; the file must equal the one-cycle file.
* A kdump.conf ``core_collector makedumpfile -l --message-level 7 -d 31 -f -b 4
  --cyclic-buffer 8192`` line works with the program name replaced.
* ``-F`` streams to stdout and a pipe into ``-R`` rebuilds the same file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from collect_oracle import run_kdumpy, small_fs

pytestmark = pytest.mark.vm  # real lab dumps (made in QEMU on first use)


@pytest.mark.parametrize("flag", ["-c", "-z"])
def test_threads_keep_pfn_order(lab_dump, flag, kdumpy_out):
    vmcore = Path(lab_dump.vmcore)
    serial = kdumpy_out(vmcore, [flag, "-d", "31"])
    threaded = kdumpy_out(vmcore, [flag, "-d", "31", "--num-threads", "3"])
    assert threaded.read_bytes() == serial.read_bytes()


def test_small_cyclic_buffer_gives_the_same_dump(lab_dump, kdumpy_out):
    vmcore = Path(lab_dump.vmcore)
    one_cycle = kdumpy_out(vmcore, ["-l", "-d", "31"])
    cyclic = kdumpy_out(vmcore, ["-l", "-d", "31", "--cyclic-buffer", "1"])
    assert cyclic.read_bytes() == one_cycle.read_bytes()


def test_kdump_conf_core_collector_line(lab_dump_61, kdumpy_out, tmp_path):
    line = "makedumpfile -l --message-level 7 -d 31 -f -b 4 --cyclic-buffer 8192"
    argv = line.split()[1:]
    dst = tmp_path / "vmcore"
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy", "collect", *argv, str(lab_dump_61.vmcore), str(dst)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "The dumpfile is saved to" in proc.stderr  # message level 2 (common) is on
    assert dst.read_bytes() == kdumpy_out(Path(lab_dump_61.vmcore), ["-l", "-d", "31"]).read_bytes()


def test_flattened_stdout_through_a_pipe(lab_dump_61, kdumpy_out, tmp_path):
    dst = tmp_path / "rebuilt"
    collect = [sys.executable, "-m", "kdumpy", "collect", "--message-level", "0"]
    with subprocess.Popen([*collect, "-F", "-l", "-d", "31", str(lab_dump_61.vmcore)],
                          stdout=subprocess.PIPE) as producer:  # fmt: skip
        rebuild = subprocess.run([*collect, "-R", str(dst)], stdin=producer.stdout,
                                 capture_output=True)  # fmt: skip
        assert producer.stdout is not None
        producer.stdout.close()
    assert producer.returncode == 0 and rebuild.returncode == 0, rebuild.stderr
    assert dst.read_bytes() == kdumpy_out(Path(lab_dump_61.vmcore), ["-l", "-d", "31"]).read_bytes()


def test_report_counts_pages_by_class(lab_dump_61, tmp_path):
    proc = run_kdumpy(
        "--show-stats", "-l", "-d", "31", str(lab_dump_61.vmcore), str(tmp_path / "o")
    )
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    for label in ("Free pages", "User process data pages", "Pages filled with zero", "Write bytes"):
        assert label in err


def test_elf_full_disk_sets_e_flags(lab_dump_61, tmp_path):
    with small_fs(tmp_path / "fs", "8m") as fs:
        dst = fs / "vmcore"
        proc = run_kdumpy("-E", "-d", "31", str(lab_dump_61.vmcore), str(dst))
        assert proc.returncode != 0 and b"incomplete" in proc.stderr
        head = dst.read_bytes()[:64]
        assert head[:4] == b"\x7fELF"
        assert int.from_bytes(head[48:52], "little") & 1, "DUMP_ELF_INCOMPLETE not set"
