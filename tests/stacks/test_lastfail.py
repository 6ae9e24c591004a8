"""A failed capture's reason on the first kernel's root filesystem, and the next boot's
report of it (kdumpy status / start)."""

from __future__ import annotations

import io
import subprocess

import pytest

from kdumpy.capture import lastfail
from kdumpy.capture.log import CaptureLog
from kdumpy.service import lastfail as service_lastfail
from kdumpy.service.paths import ServicePaths


@pytest.fixture
def loop_ext4(tmp_path):
    image = tmp_path / "rootfs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image), "16M"], check=True)
    proc = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"no loop device: {proc.stderr.strip()}")
    device = proc.stdout.strip()
    yield image, device
    subprocess.run(["losetup", "-d", device], check=False)


def test_record_on_the_root_filesystem(tmp_path, loop_ext4):
    image, device = loop_ext4
    rootfs = tmp_path / "rootfs"
    rootfs.write_text(f"ext4 {device}\n")
    stream = io.StringIO()
    reason = "md raid5 /dev/md0 (UUID u) did not start:\nnot enough to start the array."
    assert lastfail.record(reason, str(rootfs), str(tmp_path / "sysroot"), CaptureLog(stream))
    assert "failure recorded in /var/lib/kdumpy/capture-failure" in stream.getvalue()
    # Read back with debugfs, independent of the mount (unmounted again by record).
    text = subprocess.run(["debugfs", "-R", "cat /var/lib/kdumpy/capture-failure", str(image)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    date, clock, rest = text.split(" ", 2)
    assert len(date) == 10 and len(clock) == 8
    assert rest == ("md raid5 /dev/md0 (UUID u) did not start: not enough to start the "
                    "array.\n")  # one line  # fmt: skip
    stat = subprocess.run(["debugfs", "-R", "stat /var/lib/kdumpy/capture-failure", str(image)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Mode:  0600" in stat


def test_record_is_best_effort(tmp_path):
    stream = io.StringIO()
    log = CaptureLog(stream)
    assert not lastfail.record("x", str(tmp_path / "absent"), str(tmp_path / "m"), log)
    rootfs = tmp_path / "rootfs"
    rootfs.write_text("ext4 /dev/kdumpy-no-such-disk\n")
    assert not lastfail.record("x", str(rootfs), str(tmp_path / "m"), log)
    assert "cannot record the failure on the root filesystem" in stream.getvalue()


def test_next_boot_reports_it(tmp_path):
    paths = ServicePaths(state_dir=tmp_path)
    lines: list[str] = []
    service_lastfail.report_failure(paths, lines.append)
    assert lines == []  # nothing failed
    (tmp_path / "capture-failure").write_text(
        "2026-12-03 13:10:00 LUKS volume c (UUID=u) did not open: \x1b[2Jbad key\n"
    )
    service_lastfail.report_failure(paths, lines.append)
    assert lines == [
        "Notice: Last capture FAILED on 2026-12-03 13:10:00: LUKS volume c (UUID=u) did not "
        f"open: \\x1b[2Jbad key (remove {tmp_path}/capture-failure once seen)"]  # fmt: skip


def test_target_by_label_without_udev_links(loop_ext4):
    """No /dev/disk/by-label link (no udev here; none yet for a fresh LVM volume in the
    guest): the device is found from the superblock, as kdump-utils' blkid does."""
    from kdumpy.errors import KdumpyError
    from kdumpy.service import targets

    image, device = loop_ext4
    subprocess.run(["e2label", device, "kdumpyff"], check=True)
    assert targets.device_node("LABEL=kdumpyff") == device
    with pytest.raises(KdumpyError, match="LABEL=kdumpy-none: no such device on this machine"):
        targets.device_node("LABEL=kdumpy-none")
