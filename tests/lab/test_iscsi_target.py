"""The lab's iSCSI target (tgt's tgtd on loopback) and the calibration rig around it.

Oracles: tgtadm's own account of the target (its LUN's backing file, the CHAP account,
the ACL), the TCP port answering, and nothing left behind after stop.  The initiator side
runs in the lab guest (tests/e2e/test_iscsi.py): this host has no iscsi_tcp.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from kdumpy.lab import stacklab
from kdumpy.lab.servers import IscsiTarget

pytestmark = pytest.mark.skipif(shutil.which("tgtd") is None, reason="tgt not installed")


def _show(target: IscsiTarget) -> str:
    return subprocess.run(
        ["tgtadm", "-C", target.control, "--lld", "iscsi", "--mode", "target", "--op", "show"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_target_serves_the_lun_with_chap_and_goes_away(tmp_path: Path) -> None:
    lun = tmp_path / "lun.img"
    with open(lun, "wb") as fh:
        fh.truncate(64 << 20)
    with IscsiTarget(tmp_path / "tgt", lun, "iqn.2026-12.org.kdumpy:t1",
                     chap=("kdumplab", "lab-chap-secret-16")) as target:  # fmt: skip
        shown = _show(target)
        assert "Target 1: iqn.2026-12.org.kdumpy:t1" in shown
        assert f"Backing store path: {lun}" in shown
        assert "Account information:\n        kdumplab" in shown
        assert _answers(target.port)
        port, control = target.port, target.control
    assert not _answers(port)
    assert not Path(f"/var/run/tgtd/socket.{control}").exists()


def test_iscsi_calibration_rig_serves_a_copy_and_attaches_nothing(tmp_path: Path) -> None:
    """Each trial gets its own copy of the prepared LUN, served at the port the capture
    initramfs logs in at; the LUN is not a virtio disk of the guest."""
    lun = stacklab.lun_image(tmp_path / "lun.img")
    prepared = stacklab.Prepared(stacklab.STACKS["iscsi"], [lun], tmp_path / "initrd.img",
                                 port=_spare())  # fmt: skip
    rig = stacklab.stack_rig(prepared)
    run_dir = tmp_path / "trial"
    run_dir.mkdir()
    assert rig.disks(run_dir) == []
    assert (run_dir / "lun.img").stat().st_size == lun.stat().st_size
    assert "virtio-net-pci,netdev=n0" in rig.extra_args
    with rig.around(run_dir):
        assert _answers(prepared.port or 0)
    assert not rig.saved(run_dir)  # an empty /var/crash: no dump arrived


def _spare() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
