"""The capture side's bring-up: LUKS headers found by UUID in hand-built images, the md
wait (whole first, then degraded), failures ending in failure_action with the reason.

mdadm, lvm and cryptsetup do not run on the build host (no such packages, and no md or
dm devices to spare): where a tool would run, a stand-in records the command and changes
the fake sysfs as the tool would.  The real tools run in the lab guests (tests/e2e).
"""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest

from kdumpy.capture import CaptureError
from kdumpy.capture import stacks as capture_stacks
from kdumpy.capture.actions import Actions
from kdumpy.capture.flow import CaptureOptions, run_capture
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.stacks import StackUp

UUID = "6f1c2a9e-5b3d-4e71-a0c8-9d2e4f6b1a37"


def _luks_header(uuid: str, version: int) -> bytes:
    """The binary header's first 208 bytes as the LUKS1/LUKS2 on-disk formats lay them out."""
    head = b"LUKS\xba\xbe" + version.to_bytes(2, "big")
    head += b"\0" * (168 - len(head))
    return head + uuid.encode().ljust(40, b"\0") + b"\0" * 4096


def _machine(tmp_path, devices: dict[str, bytes]):
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    (sys_root / "class/block").mkdir(parents=True)
    dev_root.mkdir()
    for name, data in devices.items():
        (sys_root / "class/block" / name).mkdir()
        (dev_root / name).write_bytes(data)
    return str(sys_root), str(dev_root)


def _log() -> tuple[CaptureLog, io.StringIO]:
    stream = io.StringIO()
    return CaptureLog(stream), stream


def _done(argv, rc=0, err=""):
    return subprocess.CompletedProcess(argv, rc, "", err)


def test_find_luks_by_uuid_luks1_and_luks2(tmp_path):
    other = "11111111-2222-3333-4444-555555555555"
    sys_root, dev_root = _machine(tmp_path, {
        "vda": b"\0" * 8192, "vdb": _luks_header(other, 1), "vdc": _luks_header(UUID, 2),
        "vdd": b"LUKS",  # shorter than a header
    })  # fmt: skip
    up = StackUp(_log()[0], 1, sys_root=sys_root, dev_root=dev_root)
    assert up.find_luks(UUID) == f"{dev_root}/vdc"
    assert up.find_luks(other.upper()) == f"{dev_root}/vdb"
    assert up.find_luks("99999999-2222-3333-4444-555555555555") is None


def test_find_luks_skips_devices_built_upon_and_prefers_the_recorded_name(tmp_path):
    """A thin pool's data device (dm-1) holds the thin volume's header at offset 0 too;
    the volume itself (dm-3) is the one without holders."""
    sys_root, dev_root = _machine(tmp_path, {"dm-1": _luks_header(UUID, 2),
                                             "dm-3": _luks_header(UUID, 2)})  # fmt: skip
    (tmp_path / "sys/class/block/dm-1/holders").mkdir()
    (tmp_path / "sys/class/block/dm-1/holders/dm-2").touch()
    (tmp_path / "sys/class/block/dm-3/holders").mkdir()
    up = StackUp(_log()[0], 1, sys_root=sys_root, dev_root=dev_root)
    assert up.find_luks(UUID) == f"{dev_root}/dm-3"
    named = tmp_path / "mapper-vg-crash"
    named.write_bytes(_luks_header(UUID, 2))
    assert up.find_luks(UUID, str(named)) == str(named)
    assert up.find_luks(UUID, str(tmp_path / "gone")) == f"{dev_root}/dm-3"


def test_luks_open_with_key_file_options(tmp_path):
    sys_root, dev_root = _machine(tmp_path, {"vdb": _luks_header(UUID, 2)})
    calls = []

    def run(argv):
        calls.append(argv)
        return _done(argv)

    log, stream = _log()
    up = StackUp(log, 1, run=run, sys_root=sys_root, dev_root=dev_root)
    up.bring_up({"layers": [{"kind": "luks", "device": "/dev/mapper/c", "uuid": UUID,
                             "name": "c", "key_file": "/etc/kdumpy/luks/k.key",
                             "keyfile_offset": 16, "keyfile_size": 0}]})  # fmt: skip
    assert calls == [["cryptsetup", "open", "--type", "luks", "--key-file",
                      "/etc/kdumpy/luks/k.key", "--keyfile-offset", "16", "--",
                      f"{dev_root}/vdb", "c"]]  # fmt: skip
    assert "LUKS volume c opened from" in stream.getvalue()


def test_wrong_key_is_one_line_reason(tmp_path):
    sys_root, dev_root = _machine(tmp_path, {"vdb": _luks_header(UUID, 2)})
    up = StackUp(
        _log()[0],
        1,
        sys_root=sys_root,
        dev_root=dev_root,
        run=lambda argv: _done(argv, 2, "No key available with this passphrase.\n"),
    )
    with pytest.raises(CaptureError) as err:
        up.bring_up({"layers": [{"kind": "luks", "device": "/dev/mapper/c", "uuid": UUID,
                                 "name": "c", "key_file": "/k"}]})  # fmt: skip
    assert str(err.value) == (
        f"LUKS volume c (UUID={UUID}) on {dev_root}/vdb did not open "
        "with its key file: No key available with this passphrase."
    )


def _md(tmp_path, behaviour):
    """A stand-in mdadm over a fake /sys/block/md0/md: *behaviour(argv, md_dir)*."""
    md_dir = tmp_path / "sys/block/md0/md"
    md_dir.mkdir(parents=True)
    calls = []

    def run(argv):
        calls.append(argv[1:])
        return behaviour(argv, md_dir)

    return md_dir, calls, run


STEP = {"kind": "md", "device": "/dev/md0", "uuid": "u", "level": "raid1"}


def test_md_degraded_is_started_after_half_the_wait_and_said(tmp_path):
    def mdadm(argv, md_dir):
        if "--run" in argv:  # a member is missing: only --run starts it
            (md_dir / "array_state").write_text("clean\n")
            (md_dir / "degraded").write_text("1\n")
            return _done(argv)
        return _done(argv, 1, "mdadm: /dev/md0 assembled from 1 drive - need all 2 to start")

    _, calls, run = _md(tmp_path, mdadm)
    log, stream = _log()
    StackUp(log, 0.2, run=run, sys_root=str(tmp_path / "sys"), delay=0.05).bring_up(
        {"layers": [STEP]}
    )
    assert calls[0] == ["--assemble", "--scan"] and calls[-1] == ["--assemble", "--scan", "--run"]
    assert "md raid1 /dev/md0 is degraded (1 device(s) missing); saving anyway" in stream.getvalue()


def test_md_whole_array_needs_no_run(tmp_path):
    def mdadm(argv, md_dir):
        (md_dir / "array_state").write_text("clean\n")
        (md_dir / "sync_action").write_text("idle\n")
        return _done(argv)

    md_dir, calls, run = _md(tmp_path, mdadm)
    log, stream = _log()
    StackUp(log, 5, run=run, sys_root=str(tmp_path / "sys")).bring_up({"layers": [STEP]})
    assert calls == [["--assemble", "--scan"]]
    assert "md raid1 /dev/md0 assembled" in stream.getvalue()
    assert (md_dir / "sync_action").read_text() == "frozen\n"  # none may start later
    assert "frozen" not in stream.getvalue()  # nothing was running: nothing to say


def test_md_resync_of_a_dirty_array_is_frozen_and_said(tmp_path):
    """The crash left the array dirty: md resyncs at once; the capture kernel freezes it
    (md's sync_action interface) so the dump has the disks and poweroff does not wait."""

    def mdadm(argv, md_dir):
        (md_dir / "array_state").write_text("active\n")
        (md_dir / "sync_action").write_text("resync\n")
        return _done(argv)

    md_dir, _, run = _md(tmp_path, mdadm)
    log, stream = _log()
    StackUp(log, 5, run=run, sys_root=str(tmp_path / "sys")).bring_up(
        {"layers": [{**STEP, "level": "raid5"}]})  # fmt: skip
    assert (md_dir / "sync_action").read_text() == "frozen\n"
    assert "kdump: md /dev/md0: resync frozen (the next boot finishes it)" in stream.getvalue()


def test_md_beyond_redundancy_fails_with_mdadms_reason(tmp_path):
    def mdadm(argv, md_dir):
        (md_dir / "array_state").write_text("inactive\n")
        return _done(argv, 1, "mdadm: /dev/md0 assembled from 1 drive - not enough to start "
                              "the array.\n")  # fmt: skip

    _, calls, run = _md(tmp_path, mdadm)
    up = StackUp(_log()[0], 0.2, run=run, sys_root=str(tmp_path / "sys"), delay=0.05)
    with pytest.raises(CaptureError) as err:
        up.bring_up({"layers": [STEP]})
    assert str(err.value) == (
        "md raid1 /dev/md0 (UUID u) did not start: mdadm: /dev/md0 "
        "assembled from 1 drive - not enough to start the array."
    )
    assert ["--run", "/dev/md0"] in calls  # an inactive, held array is asked to run


def test_lvm_retries_until_the_volume_group_appears(tmp_path):
    node = tmp_path / "vg-lv"
    calls = []

    def lvm(argv):
        calls.append(argv)
        if len(calls) < 3:
            return _done(argv, 5, '  Volume group "vg" not found\n')
        node.touch()
        return _done(argv)

    log, stream = _log()
    StackUp(log, 5, run=lvm, delay=0.01).bring_up(
        {"layers": [{"kind": "lvm", "device": str(node), "vg": "vg", "lv": "lv", "thin": True}]}
    )
    assert calls[-1] == ["lvm", "lvchange", "-ay", "--", "vg/lv"] and len(calls) == 3
    assert "LVM thin volume vg/lv active" in stream.getvalue()


def test_main_records_the_reason(tmp_path, monkeypatch):
    plan = tmp_path / "stacks.json"
    plan.write_text(json.dumps({"layers": [{"kind": "lvm", "device": str(tmp_path / "x"),
                                            "vg": "vg", "lv": "lv"}]}))  # fmt: skip
    monkeypatch.setenv("KDUMP_DEVICE_TIMEOUT", "0")
    monkeypatch.setenv("PATH", str(tmp_path))  # no lvm: the failure is lvm's absence
    failure = tmp_path / "run/kdumpy/stack-failure"
    log = tmp_path / "run/kdumpy/stack.log"
    assert capture_stacks.main(str(plan), str(failure), str(log)) == 1
    assert failure.read_text().endswith("did not activate: lvm: No such file or directory\n")
    (tmp_path / "lvm").write_text("#!/bin/sh\necho '  Volume group \"vg\" not found' >&2\nexit 5\n")
    (tmp_path / "lvm").chmod(0o755)
    assert capture_stacks.main(str(plan), str(failure), str(log)) == 1
    assert failure.read_text() == 'LVM volume vg/lv did not activate: Volume group "vg" not found\n'
    # The bring-up's own lines are kept for kexec-dmesg.log (the capture reads them).
    (line,) = capture_stacks.log_lines(str(log))
    assert line.endswith('kdump: ERROR: LVM volume vg/lv did not activate: Volume group "vg" '
                         "not found")  # fmt: skip
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert oct(failure.stat().st_mode & 0o777) == "0o600"
    assert capture_stacks.failure(str(failure)) == (
        'LVM volume vg/lv did not activate: Volume group "vg" not found'
    )
    assert capture_stacks.failure(str(tmp_path / "none")) is None


def test_flow_runs_failure_action_with_the_stack_reason(tmp_path):
    failure = tmp_path / "stack-failure"
    failure.write_text("md raid1 /dev/md0 (UUID u) did not start: not enough to start\n")
    stack_log = tmp_path / "stack.log"
    stack_log.write_text("[    0.100] kdump: ERROR: md raid1 /dev/md0 (UUID u) did not start\n")
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 UUID=fs-uuid\npath /var/crash\nfailure_action poweroff\n")
    log = CaptureLog(open(os.devnull, "w"))  # noqa: SIM115
    actions = Actions(log, dry_run=True)
    options = CaptureOptions(
        config=str(conf),
        vmcore=str(tmp_path / "vmcore"),
        cmdline="",
        mountpoint=str(tmp_path / "mnt"),
        stack_failure=str(failure),
        stack_log=str(stack_log),
    )
    result = run_capture(options, log, actions)
    # /init's bring-up lines come first in what kexec-dmesg.log would hold.
    assert log.text().startswith("[    0.100] kdump: ERROR: md raid1 /dev/md0 (UUID u) did not")
    assert not result.ok
    assert result.error == (
        "dump target stack: md raid1 /dev/md0 (UUID u) did not start: not enough to start"
    )
    assert "mount attempt" not in log.text()  # no waiting for a mount that cannot happen
    assert actions.performed == ["poweroff"]
