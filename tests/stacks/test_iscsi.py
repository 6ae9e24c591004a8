"""iSCSI under a dump target: the session read from a hand-built sysfs (the layout the
kernel's scsi_transport_iscsi and libiscsi make for a software-initiator login), the
plan and files it puts into the capture initramfs, and the capture side's login.

The build host has no iSCSI initiator (no iscsi_tcp, no open-iscsi); the real login runs
in the lab guest against tgt (tests/e2e/test_iscsi.py).  Here a stand-in for iscsistart
records its command line and makes the session appear in the fake sysfs as the kernel
would.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from kdumpy.capture import CaptureError
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.stacks import StackUp, run_bounded
from kdumpy.errors import KdumpyError
from kdumpy.service.stacks import block, iscsi
from kdumpy.service.stacks.install import CHAP_DIR, PLAN_PATH, plan_stack

IQN = "iqn.2026-12.org.kdumpy:lab"
INITIATOR = "iqn.1993-08.org.debian:01:f5a65f90c77f"


def _session(sys_root: Path, n: int, attrs: dict[str, str], luns: dict[int, str],
             portal: tuple[str, str] = ("192.0.2.7", "3260")) -> Path:  # fmt: skip
    """hostN/sessionN with its iscsi_session attributes, one connection and a disk per
    LUN, linked from class/block and class/iscsi_session as the kernel links them."""
    sdir = sys_root / f"devices/platform/host{n}/session{n}"
    attr_dir = sdir / "iscsi_session" / f"session{n}"
    attr_dir.mkdir(parents=True)
    for name, value in attrs.items():
        (attr_dir / name).write_text(value + "\n")
    conn = sdir / f"connection{n}:0/iscsi_connection/connection{n}:0"
    conn.mkdir(parents=True)
    (conn / "persistent_address").write_text(portal[0] + "\n")
    (conn / "persistent_port").write_text(portal[1] + "\n")
    for lun, disk in luns.items():
        block_dir = sdir / f"target{n}:0:0/{n}:0:0:{lun}/block/{disk}"
        block_dir.mkdir(parents=True)
        (block_dir / f"{disk}1").mkdir()  # a partition below the disk
        for name, path in ((disk, block_dir), (f"{disk}1", block_dir / f"{disk}1")):
            link = sys_root / "class/block" / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(path, link.parent))
    link = sys_root / f"class/iscsi_session/session{n}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(attr_dir, link.parent))
    return sdir


def _attrs(**extra: str) -> dict[str, str]:
    base = {"targetname": IQN, "tpgt": "1", "initiatorname": INITIATOR,
            "username": "(null)", "password": "(null)",
            "username_in": "(null)", "password_in": "(null)"}  # fmt: skip
    return {**base, **extra}


def test_session_read_from_sysfs(tmp_path):
    _session(tmp_path, 2, _attrs(), {1: "sdb"})
    (found,) = iscsi.sessions(("/dev/sdb",), str(tmp_path))
    assert found == iscsi.IscsiSession(
        disk="/dev/sdb", session="session2", initiator=INITIATOR, target=IQN, tpgt=1,
        address="192.0.2.7", port=3260, lun=1,
    )  # fmt: skip
    assert not found.chap  # "(null)": libiscsi's spelling of an unset name
    assert found.describe() == f"iSCSI LUN 1 of {IQN} at 192.0.2.7:3260"


def test_partition_on_a_lun_and_mutual_chap(tmp_path):
    _session(tmp_path, 3, _attrs(username="u1", password="s1-secret", username_in="tgt",
                                 password_in="s2-secret"), {4: "sdc"},
             portal=("2001:db8::5", "3261"))  # fmt: skip
    (found,) = iscsi.sessions(("/dev/sdc1",), str(tmp_path))
    assert (found.lun, found.address, found.port) == (4, "2001:db8::5", 3261)
    assert found.chap == iscsi.Chap("u1", "s1-secret", "tgt", "s2-secret")
    assert found.portal() == "[2001:db8::5]:3261"
    assert found.describe().endswith("with CHAP")


def test_disk_of_another_transport_is_not_iscsi(tmp_path):
    virtio = tmp_path / "devices/pci0000:00/0000:00:04.0/virtio2/block/vdb"
    virtio.mkdir(parents=True)
    (tmp_path / "class/block").mkdir(parents=True)
    (tmp_path / "class/block/vdb").symlink_to(virtio)
    assert iscsi.sessions(("/dev/vdb", "/dev/nonexistent"), str(tmp_path)) == ()


def test_initiator_name_from_open_iscsi_file_when_sysfs_has_none(tmp_path):
    _session(tmp_path, 2, _attrs(initiatorname="(null)"), {1: "sdb"})
    conf = tmp_path / "initiatorname.iscsi"
    conf.write_text(f"## DO NOT EDIT\nInitiatorName={INITIATOR}\n")
    found = iscsi.read_session("/dev/sdb", str(tmp_path), str(conf))
    assert found is not None and found.initiator == INITIATOR
    with pytest.raises(KdumpyError, match=r"no initiator name"):
        iscsi.read_session("/dev/sdb", str(tmp_path), str(tmp_path / "absent"))


@pytest.mark.parametrize(("attrs", "portal", "message"), [
    (_attrs(targetname="not a name"), ("192.0.2.7", "3260"), r"is not an iSCSI name"),
    (_attrs(), ("portal.example", "3260"), r"portal address 'portal.example' is not an IP"),
    (_attrs(), ("192.0.2.7", "99999"), r"portal port '99999' is not a TCP port"),
    # A secret sysfs shows only to root: the name without it cannot log in.
    (_attrs(username="u1", password=""), ("192.0.2.7", "3260"), r"CHAP secret unreadable"),
])  # fmt: skip
def test_bad_session_attributes_are_one_line_errors(tmp_path, attrs, portal, message):
    _session(tmp_path, 2, attrs, {1: "sdb"}, portal=portal)
    with pytest.raises(KdumpyError, match=message) as info:
        iscsi.sessions(("/dev/sdb",), str(tmp_path))
    assert "\n" not in str(info.value) and "session2" in str(info.value)


def test_session_without_connection_is_refused(tmp_path):
    sdir = _session(tmp_path, 2, _attrs(), {1: "sdb"})
    for path in sorted(sdir.glob("connection2:0/**/*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(KdumpyError, match=r"no connection"):
        iscsi.sessions(("/dev/sdb",), str(tmp_path))


# ---- the capture initramfs's share ----


def _stack(*sessions: iscsi.IscsiSession) -> block.Stack:
    return block.Stack("/dev/sdb1", disks=tuple(s.disk for s in sessions), iscsi=sessions)


def _plan(stack: block.Stack):
    return plan_stack(stack, [], {}, lambda alias: [], tool=lambda name: f"/usr/sbin/{name}")


def _lab_session(lun: int = 1, disk: str = "/dev/sdb", chap: iscsi.Chap | None = None):
    return iscsi.IscsiSession(disk, "session1", INITIATOR, IQN, 1, "10.0.2.2", 3260, lun,
                              chap or iscsi.Chap())  # fmt: skip


def test_plan_logs_in_first_and_keeps_chap_secrets_out_of_the_plan():
    chap = iscsi.Chap("kdumplab", "lab-chap-secret-16")
    files = _plan(_stack(_lab_session(chap=chap)))
    assert files.tools == ["/usr/sbin/iscsistart"]
    assert files.modules == ["iscsi_tcp"]
    plan_bytes, _ = files.files[PLAN_PATH]
    assert b"lab-chap-secret-16" not in plan_bytes
    (step,) = json.loads(plan_bytes)["layers"]
    assert step == {"kind": "iscsi", "initiator": INITIATOR, "target": IQN, "tpgt": 1,
                    "address": "10.0.2.2", "port": 3260, "luns": [1],
                    "chap_file": f"{CHAP_DIR}/0.chap"}  # fmt: skip
    secrets, mode = files.files[f"{CHAP_DIR}/0.chap"]
    assert mode == 0o400
    assert json.loads(secrets) == {"username": "kdumplab", "password": "lab-chap-secret-16",
                                   "username_in": "", "password_in": ""}  # fmt: skip


def test_two_luns_of_one_target_are_one_login_below_md():
    stack = _stack(_lab_session(1, "/dev/sdb"), _lab_session(2, "/dev/sdc"))
    md = block.Layer("md", "/dev/md0", uuid="0c9e5a43-11d2-7b54-6a0e-3f1d5c7e9a21",
                     level="raid1")  # fmt: skip
    files = _plan(block.Stack("/dev/md0", (md,), stack.disks, iscsi=stack.iscsi))
    steps = json.loads(files.files[PLAN_PATH][0])["layers"]
    assert [s["kind"] for s in steps] == ["iscsi", "md"]
    assert steps[0]["luns"] == [1, 2]
    assert files.tools == ["/usr/sbin/iscsistart", "/usr/sbin/mdadm"]
    assert not any(name.startswith(CHAP_DIR) for name in files.files)  # no CHAP: no file


# ---- the capture side ----


class FakeInitiator:
    """iscsistart's stand-in: records argv; *works* makes the session and its disk appear
    in the fake sysfs as the kernel would, else it fails as iscsistart does."""

    def __init__(self, sys_root: Path, works: bool = True) -> None:
        self.sys_root, self.works, self.calls = sys_root, works, []

    def __call__(self, argv, timeout):
        self.calls.append((argv, timeout))
        if not self.works:
            return subprocess.CompletedProcess(
                argv, 8, "", "iscsistart: initiator reported error (8 - connection timed out)"
            )
        _session(self.sys_root, 5, _attrs(), {1: "sda"}, portal=("10.0.2.2", "3260"))
        return subprocess.CompletedProcess(argv, 0, "", "")


def _up(tmp_path, runner, timeout=5.0):
    stream = io.StringIO()
    return StackUp(CaptureLog(stream), timeout, sys_root=str(tmp_path / "sys"),
                   dev_root="/dev", delay=0.01, run_for=runner), stream  # fmt: skip


def _step(tmp_path, chap: dict | None = None) -> dict:
    step = {"kind": "iscsi", "initiator": INITIATOR, "target": IQN, "tpgt": 1,
            "address": "10.0.2.2", "port": 3260, "luns": [1]}  # fmt: skip
    if chap is not None:
        path = tmp_path / "0.chap"
        path.write_text(json.dumps(chap))
        step["chap_file"] = str(path)
    return step


def test_capture_logs_in_with_iscsistart_and_finds_the_lun(tmp_path):
    runner = FakeInitiator(tmp_path / "sys")
    up, stream = _up(tmp_path, runner)
    chap = {"username": "kdumplab", "password": "-starts-with-dash", "username_in": "",
            "password_in": ""}  # fmt: skip
    up.bring_up({"layers": [_step(tmp_path, chap)]})
    ((argv, bound),) = runner.calls  # logged in once; the disk was there at once
    assert 1 <= bound <= 5  # what is left of KDUMP_DEVICE_TIMEOUT
    assert argv == ["iscsistart", "-i", INITIATOR, "-t", IQN, "-g", "1", "-a",
                        "10.0.2.2", "-p", "3260", "-u", "kdumplab",
                        "-w", "-starts-with-dash"]  # fmt: skip
    assert f"kdump: iSCSI target {IQN} at 10.0.2.2:3260 logged in: LUN 1 /dev/sda" in \
        stream.getvalue()  # fmt: skip
    assert "-starts-with-dash" not in stream.getvalue()


def test_capture_unknown_portal_group_logs_in_with_tag_1(tmp_path):
    runner = FakeInitiator(tmp_path / "sys")
    up, _ = _up(tmp_path, runner)
    up.bring_up({"layers": [{**_step(tmp_path), "tpgt": -1}]})
    argv = runner.calls[0][0]
    assert argv[argv.index("-g") + 1] == "1"


def test_capture_target_down_is_a_bounded_failure_with_the_reason(tmp_path):
    runner = FakeInitiator(tmp_path / "sys", works=False)
    (tmp_path / "sys").mkdir()
    up, _ = _up(tmp_path, runner, timeout=0.3)
    with pytest.raises(CaptureError) as info:
        up.bring_up({"layers": [_step(tmp_path)]})
    assert str(info.value) == (
        f"iSCSI target {IQN} at 10.0.2.2:3260: login failed: "
        "iscsistart: initiator reported error (8 - connection timed out)"
    )
    assert len(runner.calls) >= 2  # retried until the wait ran out


def test_capture_unreadable_chap_file_is_the_reason(tmp_path):
    step = {**_step(tmp_path), "chap_file": str(tmp_path / "missing.chap")}
    up, _ = _up(tmp_path, FakeInitiator(tmp_path / "sys"))
    with pytest.raises(CaptureError, match=r"missing\.chap: CHAP settings unreadable"):
        up.bring_up({"layers": [step]})


# ---- the bounded runner the login goes through ----


def test_run_bounded_kills_a_tool_that_ignores_sigterm_and_leaves_a_child(tmp_path):
    """What iscsistart does against a dead portal: it keeps retrying, and a child it forked
    holds the output open; the bound is kept all the same, and the reason is the tool's
    last words and the bound, never its command line."""
    tool = tmp_path / "iscsistart"
    tool.write_text("#!/bin/sh\ntrap '' TERM\necho 'cannot make connection to 10.0.2.2'\n"
                    "sleep 60 &\nsleep 60\n")  # fmt: skip
    tool.chmod(0o755)
    start = time.monotonic()
    proc = run_bounded([str(tool), "-w", "the-secret"], 1.0)
    assert time.monotonic() - start < 10
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == ["cannot make connection to 10.0.2.2",
                                        f"{tool}: no result within 1 s"]  # fmt: skip
    assert "the-secret" not in proc.stderr


def test_run_bounded_output_status_and_missing_tool(tmp_path):
    proc = run_bounded(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (proc.returncode, proc.stderr) == (3, "out\nerr\n")
    missing = run_bounded([str(tmp_path / "absent")], 30)
    assert (missing.returncode, missing.stderr) == (127, f"{tmp_path}/absent: No such file or "
                                                         "directory")  # fmt: skip
