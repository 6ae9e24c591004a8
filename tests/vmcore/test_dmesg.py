"""Kernel log: identical to makedumpfile --dump-dmesg, and consistent with the guest's
serial console (an independent record of what the kernel printed before the panic)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.cli import main
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import LogRecord, format_record, kernel_log, records

TIME_PREFIX = re.compile(r"^\[\s*\d+\.\d{6}\] ")


def test_format_follows_makedumpfile_rules() -> None:
    """Prefix width, newline indent, and escapes as makedumpfile's dump_record() prints
    them (C rules: isprint/isspace in the C locale, signed char for bytes >= 0x80)."""
    rec = LogRecord(1_234_567_891, b"a\nb\x01\t\xc3", caller_id=0x80000001)
    assert format_record(rec) == b"[    1.234567] a\n               b\\x01\t\\xffffffc3\n"
    assert format_record(LogRecord(0, b"x", caller_id=42), caller_id=True) == (
        b"[    0.000000] [   T42] x\n"
    )
    assert format_record(rec, caller_id=True).startswith(b"[    1.234567] [    C1] a\n" + b" " * 24)


@pytest.mark.vm
def test_matches_makedumpfile(lab_dump, mdf_dmesg) -> None:  # noqa: ANN001
    ref = mdf_dmesg(lab_dump.vmcore)
    if ref is None:
        pytest.skip(f"makedumpfile 1.7.2 cannot print the log of {lab_dump.kernel.release}")
    with open_dump(lab_dump.vmcore) as dump:
        assert kernel_log(dump) == ref.read_bytes()


def _console_lines(dump) -> list[str]:  # noqa: ANN001
    """Our records the way the console prints them: each line with the record's prefix."""
    out = []
    for rec in records(dump):
        prefix = format_record(LogRecord(rec.ts_nsec, b"")).decode()[:-1]
        out += [prefix + line for line in rec.text.decode("utf-8", "replace").split("\n")]
    return out


@pytest.mark.vm
def test_matches_serial_console(lab_dump) -> None:  # noqa: ANN001
    """Every line the crashed kernel printed on ttyS0 before the capture kernel started
    is in our log, in the same order, and the log ends with the panic's last lines."""
    text = lab_dump.serial_log.read_text(errors="replace").replace("\r", "")
    starts = [m.start() for m in re.finditer(r"^\[\s*\d+\.\d+\] Linux version ", text, re.M)]
    assert len(starts) >= 2, "serial log should show the crashed and the capture kernel"
    console = [ln for ln in text[starts[0] : starts[1]].splitlines() if TIME_PREFIX.match(ln)]
    with open_dump(lab_dump.vmcore) as dump:
        ours = _console_lines(dump)
    pos = 0
    for line in console:
        found = ours.index(line, pos) if line in ours[pos:] else -1
        assert found >= 0, f"console line missing or out of order: {line!r}"
        pos = found + 1
    assert len(console) > 300
    assert any("sysrq" in ln.lower() for ln in ours[-80:])


FILTERED = {
    "kdump-c-d31": ["-c", "-d", "31"],
    "kdump-l-d31": ["-l", "-d", "31"],
    "kdump-p-d31": ["-p", "-d", "31"],
    "kdump-z-d31": ["-z", "-d", "31"],
    "elf-E-d31": ["-E", "-d", "31"],
    "flat-l-d31": ["-F", "-l", "-d", "31"],
}


@pytest.mark.vm
@pytest.mark.parametrize("name", sorted(FILTERED))
def test_filtered_dumps_keep_the_log(lab_dump, mdf, mdf_dmesg, name: str) -> None:  # noqa: ANN001
    """The log survives -d 31 filtering in every format (its pages are kernel data)."""
    ref = mdf_dmesg(lab_dump.vmcore)
    if ref is None:
        pytest.skip("makedumpfile cannot print this kernel's log")
    (out,) = mdf(lab_dump.vmcore, name, FILTERED[name])
    with open_dump(out) as dump:
        assert kernel_log(dump) == ref.read_bytes()


@pytest.mark.vm
def test_cli_split_set_and_output_file(lab_dump, mdf, mdf_dmesg, tmp_path: Path) -> None:  # noqa: ANN001
    ref = mdf_dmesg(lab_dump.vmcore)
    if ref is None:
        pytest.skip("makedumpfile cannot print this kernel's log")
    args = ["-l", "-d", "1", "--split", "--splitblock-size", "65536"]
    parts = mdf(lab_dump.vmcore, "split-l-d1", args, outputs=3)
    out = tmp_path / "dmesg.txt"
    assert main(["dmesg", *map(str, parts), "-o", str(out)]) == 0
    assert out.read_bytes() == ref.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["dmesg.txt"]  # no temporary left


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notadump"
    bad.write_bytes(b"hello world, not a dump\n" * 10)
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy", "dmesg", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr
