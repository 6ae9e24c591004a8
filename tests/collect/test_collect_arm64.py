"""The collector on arm64 dumps: every format and dump level against Debian's arm64
makedumpfile, and the kernel log of each filtered file against the serial console.

The oracle is Debian 12's own makedumpfile 1.7.2 built for arm64 (an x86_64 makedumpfile
reads only x86_64 dumps), run on the host by qemu-user (:func:`kdumpy.lab.arm64_guest.
arm64_makedumpfile`): the files kdumpy writes must be byte-identical to its.  The console
is the guest's serial log, an independent record of what the crashed kernel printed.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from collect_oracle import run_kdumpy

from kdumpy.lab.arm64_guest import arm64_makedumpfile
from kdumpy.lab.dumps import LabDump, lab_dump
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.dmesg import LogRecord, format_record, records

pytestmark = pytest.mark.vm

TIME_PREFIX = re.compile(r"^\[\s*\d+\.\d{6}\] ")
# makedumpfile's formats and the levels that each exclude one kind of page, and all of them.
CASES = [
    ["-l", "-d", "31"],
    ["-c", "-d", "31"],
    ["-E", "-d", "31"],
    ["-l", "-d", "0"],
    ["-l", "-d", "1"],
    ["-l", "-d", "2"],
    ["-l", "-d", "4"],
    ["-l", "-d", "8"],
    ["-l", "-d", "16"],
]


@pytest.fixture(scope="module")
def arm64_61() -> LabDump:
    return lab_dump("arm64-6.1")


@pytest.fixture(scope="module")
def arm64_mdf(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, list[str]], Path]:
    """Debian's arm64 ``makedumpfile ARGS VMCORE OUT`` under qemu-user, once per args."""
    base = tmp_path_factory.mktemp("arm64-mdf")
    made: dict[tuple[str, ...], Path] = {}

    def run(vmcore: Path, args: list[str]) -> Path:
        if tuple(args) not in made:
            out = base / ("mdf" + "".join(a.replace("-", "_") for a in args))
            cmd = [*arm64_makedumpfile(), *args, str(vmcore), str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, proc.stderr[-500:]
            made[tuple(args)] = out
        return made[tuple(args)]

    return run


def _kdumpy(vmcore: Path, args: list[str], out: Path) -> Path:
    proc = run_kdumpy(*args, str(vmcore), str(out))
    assert proc.returncode == 0, proc.stderr.decode()[-500:]
    return out


@pytest.mark.parametrize("args", CASES, ids=lambda a: "".join(a).replace("-", ""))
def test_byte_identical_to_arm64_makedumpfile(arm64_61, arm64_mdf, args, tmp_path) -> None:  # noqa: ANN001
    theirs = arm64_mdf(arm64_61.vmcore, args)
    ours = _kdumpy(arm64_61.vmcore, args, tmp_path / "kdumpy.out")
    assert ours.stat().st_size == theirs.stat().st_size
    assert ours.read_bytes() == theirs.read_bytes()


def _console(serial_log: Path) -> list[str]:
    """The crashed kernel's timestamped console lines (before the capture kernel's, which
    begin, on arm64, with "Booting Linux on physical CPU")."""
    text = serial_log.read_text(errors="replace").replace("\r", "")
    boots = [m.start() for m in re.finditer(r"^\[\s*0\.000000\] Booting Linux ", text, re.M)]
    assert len(boots) >= 2, "the serial log should show the crashed and the capture kernel"
    return [ln for ln in text[boots[0] : boots[1]].splitlines() if TIME_PREFIX.match(ln)]


@pytest.mark.parametrize("args", [["-l", "-d", "31"], ["-c", "-d", "31"], ["-E", "-d", "31"]],
                         ids=lambda a: "".join(a).replace("-", ""))  # fmt: skip
def test_filtered_log_holds_the_console(arm64_61, args, tmp_path) -> None:  # noqa: ANN001
    """Every console line of the crashed kernel is in the filtered file's log, in order,
    and the log ends with the panic."""
    out = _kdumpy(arm64_61.vmcore, args, tmp_path / "kdumpy.out")
    with open_dump(out) as dump:
        ours = []
        for rec in records(dump):
            prefix = format_record(LogRecord(rec.ts_nsec, b"")).decode()[:-1]
            ours += [prefix + line for line in rec.text.decode("utf-8", "replace").split("\n")]
    console = _console(arm64_61.serial_log)
    assert len(console) > 100
    pos = 0
    for line in console:
        assert line in ours[pos:], f"console line missing or out of order: {line!r}"
        pos = ours.index(line, pos) + 1
    assert any("sysrq" in ln.lower() for ln in ours[-80:])
