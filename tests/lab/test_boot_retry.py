"""A stock guest boot that dies before its job is repeated once, and recorded; nothing else is."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdumpy.lab.debian_job import boot_once_more_if_stock_boot_died, boot_retries_log
from kdumpy.lab.qemu import GuestRun

PANIC = "[    2.9] Kernel panic - not syncing: IO-APIC + timer doesn't work!\x1b[0m"
BOOTED = "[   30.1] systemd[1]: Started kdumpy-lab-job.service\nKDUMPY-JOB-BEGIN\n"


class Boots:
    """Stand-in for QEMU: each boot writes the next console text to the serial log."""

    def __init__(self, workdir: Path, consoles: list[str], stopped_on: str | None = None):
        self.workdir, self.consoles, self.stopped_on = workdir, consoles, stopped_on
        self.boots = self.fresh = 0

    def boot(self) -> GuestRun:
        log = self.workdir / "serial.log"
        log.write_text(self.consoles[self.boots])
        self.boots += 1
        return GuestRun(0, 3.0, log, stopped_on=self.stopped_on)

    def fresh_root(self) -> None:
        self.fresh += 1


@pytest.fixture(autouse=True)
def lab_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KDUMPY_LAB_CACHE", str(tmp_path / "cache"))


def test_a_stock_boot_that_died_before_the_job_runs_again_and_is_recorded(tmp_path):
    boots = Boots(tmp_path, ["early boot\n" + PANIC + "\n", BOOTED])
    run = boot_once_more_if_stock_boot_died(boots.boot, boots.fresh_root, True, tmp_path)
    assert (boots.boots, boots.fresh) == (2, 1)
    assert "KDUMPY-JOB-BEGIN" in run.serial_text()
    assert PANIC in (tmp_path / "serial-first-boot.log").read_text()
    (line,) = boot_retries_log().read_text().splitlines()
    stamp, workdir, rest = line.split(" ", 2)
    assert stamp.isdigit() and workdir == str(tmp_path)
    # The console's words are escaped: a dump of the guest's console is not the terminal's.
    assert rest.endswith("IO-APIC + timer doesn't work!\\x1b[0m"), rest


def test_a_second_death_is_the_result(tmp_path):
    boots = Boots(tmp_path, [PANIC, PANIC])
    run = boot_once_more_if_stock_boot_died(boots.boot, boots.fresh_root, True, tmp_path)
    assert boots.boots == 2
    assert "KDUMPY-JOB-BEGIN" not in run.serial_text()


@pytest.mark.parametrize(
    ("consoles", "stock", "stopped_on"),
    [
        ([BOOTED + PANIC], True, None),  # the job ran: its crash is the test's business
        ([PANIC], False, None),  # a kept overlay or kdumpy's initramfs: kdumpy was on the path
        ([PANIC], True, "Kernel panic"),  # stopped on purpose at a marker
    ],
)
def test_no_repeat_where_kdumpy_ran_or_the_stop_was_meant(tmp_path, consoles, stock, stopped_on):
    boots = Boots(tmp_path, consoles, stopped_on)
    boot_once_more_if_stock_boot_died(boots.boot, boots.fresh_root, stock, tmp_path)
    assert (boots.boots, boots.fresh) == (1, 0)
    assert not boot_retries_log().exists()
