"""Faults at capture time in the Debian guest: the target fills up, the ssh server goes
away, the ssh server's host key changes.  The capture kernel must keep what it wrote as
``-incomplete``, run failure_action, and never say the dump was saved."""

from __future__ import annotations

import shutil
from pathlib import Path

from kdumpy.lab.debian_job import read_back
from kdumpy.lab.debian_kdump import Cycle, blank_ext4, run_cycle
from kdumpy.lab.servers import GUEST_HOST_IP, Sshd

from .helpers import full_only
from .test_remote import ssh_conf, ssh_files

COLLECTOR = "core_collector makedumpfile -l --message-level 7 -d 31\n"


def test_target_fills_up(tmp_path, kernel):
    target = blank_ext4(tmp_path / "small.img", "kdumptgt", "12M")
    conf = "ext4 LABEL=kdumptgt\npath /var/crash\n" + COLLECTOR + "failure_action poweroff\n"
    result = run_cycle(Cycle(conf, disks=[target]), tmp_path / "run", kernel)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "saving vmcore failed; failure_action poweroff" in serial, serial[-3000:]
    assert "kdump: saved vmcore to" not in serial
    assert "kdump: poweroff" in serial
    crash = read_back(target.path, "/var/crash", tmp_path / "got")
    (dump_dir,) = list(crash.iterdir())
    names = {p.name for p in dump_dir.iterdir()}
    assert "vmcore-incomplete" in names and "vmcore" not in names


@full_only
def test_ssh_server_gone_at_crash(tmp_path, kernel):
    """Reachable when kdumpy start checks, gone when the capture kernel needs it."""
    sshd = Sshd(tmp_path / "sshd").start()
    crash = tmp_path / "server-crash"
    crash.mkdir()
    files = ssh_files(sshd, sshd.known_hosts_line(GUEST_HOST_IP))
    cycle = Cycle(ssh_conf(crash), files=files, on_armed=sshd.stop, pause=5)
    try:
        result = run_cycle(cycle, tmp_path / "run", kernel)
    finally:
        sshd.stop()
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "not reachable (5/5)" in serial, serial[-3000:]
    assert "unreachable after 5 tries" in serial
    assert "failure_action poweroff" in serial
    assert "kdump: saved vmcore to" not in serial
    assert not any(crash.rglob("vmcore*"))


@full_only
def test_ssh_host_key_changed_at_crash(tmp_path, kernel):
    """Another server (another host key) answers at the same address: refused."""
    sshd = Sshd(tmp_path / "sshd").start()
    impostor = Sshd(tmp_path / "impostor", port=sshd.port)
    shutil.copy(sshd.dir / "authorized_keys", impostor.dir / "authorized_keys")
    crash = tmp_path / "server-crash"
    crash.mkdir()
    files = ssh_files(sshd, sshd.known_hosts_line(GUEST_HOST_IP))

    def swap() -> None:
        sshd.stop()
        impostor.start()

    cycle = Cycle(ssh_conf(crash), files=files, on_armed=swap, pause=5)
    try:
        result = run_cycle(cycle, tmp_path / "run", kernel)
    finally:
        sshd.stop()
        impostor.stop()
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "its host key does not match" in serial, serial[-3000:]
    assert "not reachable" not in serial  # refused at once, never retried
    assert "kdump: saved vmcore to" not in serial
    assert not any(Path(crash).rglob("vmcore*"))
