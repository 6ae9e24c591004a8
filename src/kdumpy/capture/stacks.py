"""Bring up the dump target's storage (and network) stack in the capture kernel, bottom-up."""

# ``/init`` runs ``python3 -m kdumpy.capture.stacks`` before it mounts the target when the
# initramfs carries a plan (``/etc/kdumpy/stacks.json``, written by
# :mod:`kdumpy.service.stacks.install`).  Each layer waits, bounded, for what it sits on:
#
# * iSCSI: ``iscsistart`` logs in to each target (the network to its portal is up by
#   then: ``/init``'s plain NIC or the network stack), until the LUNs' disks appear;
# * md: ``mdadm --assemble --scan`` (the arrays of ``/etc/mdadm/mdadm.conf``) until the
#   array starts whole; past half the wait it is started with what is there (``--run``): a
#   degraded array still saves, and says so;
# * LUKS: the header found by its UUID on any block device, opened with the key file;
# * LVM: ``lvm lvchange -ay VG/LV`` (a thin volume brings its pool up with it);
# * the network to a remote target over bonds, VLANs, bridges, static IPv4/IPv6
#   (:mod:`kdumpy.capture.netstack`), first.
#
# When a layer does not come up, the one-line reason goes to the console and to
# ``/run/kdumpy/stack-failure``; the capture side (:func:`failure`) then runs
# failure_action with that reason instead of waiting for a mount that cannot happen.

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from kdumpy.capture import CaptureError
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.netstack import NetUp
from kdumpy.fileio import private_dir, replace

PLAN = "/etc/kdumpy/stacks.json"
FAILURE = "/run/kdumpy/stack-failure"
LOG = "/run/kdumpy/stack.log"  # the bring-up's lines, for kexec-dmesg.log
LUKS_MAGIC = b"LUKS\xba\xbe"
LUKS_UUID = slice(168, 208)  # the same offset in LUKS1 and LUKS2 binary headers
MD_ACTIVE = ("clean", "active", "active-idle", "write-pending", "read-auto")

Runner = Callable[[list[str]], subprocess.CompletedProcess]
# A command given at most so many seconds (iscsistart retries a dead portal by itself).
BoundedRunner = Callable[[list[str], float], subprocess.CompletedProcess]
TOOL_TIMEOUT = 300.0


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return run_bounded(argv, TOOL_TIMEOUT)


def run_bounded(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """*argv* in a session of its own, its output in an anonymous file, killed with all
    it started after *timeout* seconds.  Not pipes and not just the one process: a child
    a tool leaves behind (iscsistart forks) would hold a pipe open, and a tool that
    ignores SIGTERM would outlive ``timeout``.  The reason never repeats the command line
    (it may hold a CHAP secret)."""
    fd = os.memfd_create("kdumpy-tool")
    with os.fdopen(fd, "w+b") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        except OSError as exc:  # the tool itself is missing or broken: a reason like any other
            return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: {exc.strerror}")
        try:
            rc = proc.wait(timeout=timeout)
            late = ""
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            late = f"{argv[0]}: no result within {timeout:.0f} s\n"
        out.seek(0)
        text = out.read().decode(errors="replace")
    return subprocess.CompletedProcess(argv, rc, "", text + late)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit status {proc.returncode}"


class StackUp:
    """One bring-up run: the plan's layers in order, each bounded by *timeout* seconds."""

    def __init__(
        self, log: CaptureLog, timeout: float, run: Runner = _run, sys_root: str = "/sys",
        dev_root: str = "/dev", delay: float = 1.0, run_for: BoundedRunner = run_bounded,
    ) -> None:  # fmt: skip
        self.log, self.timeout, self.run, self.run_for = log, timeout, run, run_for
        self.sys_root, self.dev_root, self.delay = sys_root, dev_root, delay

    def bring_up(self, plan: dict) -> None:
        """The network stack, then every layer of *plan*; CaptureError names the one that
        did not come up."""
        if plan.get("network"):
            NetUp(self.log, self.timeout, self.run, self.sys_root).bring_up(plan["network"])
        for step in plan.get("layers", []):
            kind = step.get("kind")
            if kind == "iscsi":
                self.iscsi(step)
            elif kind == "md":
                self.md(step)
            elif kind == "luks":
                self.luks(step)
            elif kind == "lvm":
                self.lvm(step)
            else:
                raise CaptureError(f"{PLAN}: unknown layer kind {kind!r}")

    def _until(self, deadline: float, attempt: Callable[[], str | None]) -> str | None:
        """Call *attempt* until it returns None (done) or *deadline*; the last reason."""
        while True:
            reason = attempt()
            if reason is None or time.monotonic() >= deadline:
                return reason
            time.sleep(self.delay)

    # iSCSI
    def iscsi(self, step: dict) -> None:
        """Log in with iscsistart (each try bounded by what is left of the wait: it
        retries an unreachable portal by itself) until a session to the target exists
        and its LUNs' disks are there."""
        target, luns = str(step["target"]), [int(n) for n in step.get("luns", [])]
        address, port = str(step["address"]), int(step["port"])
        portal = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        tpgt = int(step.get("tpgt", -1))
        argv = ["iscsistart", "-i", str(step["initiator"]), "-t", target,
                "-g", str(tpgt if tpgt >= 0 else 1), "-a", address, "-p", str(port)]  # fmt: skip
        argv += _chap_options(step.get("chap_file"))
        deadline = time.monotonic() + self.timeout

        def login() -> str | None:
            if not self.iscsi_session(target):
                proc = self.run_for(argv, max(1.0, deadline - time.monotonic()))
                if not self.iscsi_session(target):
                    return f"login failed: {_last_line(proc)}"
            missing = [n for n in luns if not self.iscsi_disk(target, n)]
            return f"logged in, no disk for LUN {missing[0]}" if missing else None

        reason = self._until(deadline, login)
        if reason is not None:
            raise CaptureError(f"iSCSI target {target} at {portal}: {reason}")
        disks = ", ".join(f"LUN {n} {self.iscsi_disk(target, n)}" for n in luns)
        self.log.info(f"iSCSI target {target} at {portal} logged in: {disks}")

    def iscsi_session(self, target: str) -> str | None:
        """The sysfs device directory of a session to *target*, if one exists."""
        for attrs in sorted(glob.glob(f"{self.sys_root}/class/iscsi_session/session*")):
            try:
                with open(f"{attrs}/targetname") as fh:
                    name = fh.read().strip()
            except OSError:
                continue
            if name == target:
                # .../hostN/sessionM/iscsi_session/sessionM -> .../hostN/sessionM
                return os.path.dirname(os.path.dirname(os.path.realpath(attrs)))
        return None

    def iscsi_disk(self, target: str, lun: int) -> str | None:
        """/dev/sdX of LUN *lun* of the session to *target* (sd_mod probes it a moment
        after the login)."""
        session = self.iscsi_session(target)
        if session is None:
            return None
        found = sorted(glob.glob(f"{session}/target*/*:*:*:{lun}/block/*"))
        return f"{self.dev_root}/{os.path.basename(found[0])}" if found else None

    # md RAID
    def md(self, step: dict) -> None:
        device, level = str(step["device"]), str(step.get("level", ""))
        kname = os.path.basename(device)
        start = time.monotonic()

        def assemble(run_degraded: bool) -> str | None:
            if self._md_state(kname) in MD_ACTIVE:
                return None
            argv = ["mdadm", "--assemble", "--scan"] + (["--run"] if run_degraded else [])
            proc = self.run(argv)
            if run_degraded and self._md_state(kname) == "inactive":
                proc = self.run(["mdadm", "--run", device])  # members held, not started
            return None if self._md_state(kname) in MD_ACTIVE else _last_line(proc)

        # Whole first: --run at once would start a degraded array before its last
        # member is probed.
        reason = self._until(start + self.timeout / 2, lambda: assemble(False))
        if reason is not None:
            reason = self._until(start + self.timeout, lambda: assemble(True))
        if reason is not None:
            raise CaptureError(f"md {level} {device} (UUID {step.get('uuid')}) did not start: "
                               f"{reason}")  # fmt: skip
        self._md_freeze(device, kname)
        missing = self._md_missing(kname)
        if missing:
            self.log.warn(f"md {level} {device} is degraded ({missing} device(s) missing); "
                          "saving anyway")  # fmt: skip
        else:
            self.log.info(f"md {level} {device} assembled")

    def _md_freeze(self, device: str, kname: str) -> None:
        """No resync or rebuild in the capture kernel: an array the crash left dirty
        starts resyncing at once, which competes with the dump for the disks, and in the
        lab a raid5 resync interrupted at final_action blocked poweroff in raid5_quiesce
        for good (at crashkernel=160M).  The next boot of the system resyncs."""
        action = f"{self.sys_root}/block/{kname}/md/sync_action"
        try:
            with open(action) as fh:
                was = fh.read().strip()
            with open(action, "w") as fh:
                fh.write("frozen\n")
        except OSError as exc:
            self.log.warn(f"md {device}: cannot freeze its resync: {exc.strerror}")
            return
        if was not in ("idle", "frozen"):
            self.log.info(f"md {device}: {was} frozen (the next boot finishes it)")

    def _md_state(self, kname: str) -> str:
        try:
            with open(f"{self.sys_root}/block/{kname}/md/array_state") as fh:
                return fh.read().strip()
        except OSError:
            return ""

    def _md_missing(self, kname: str) -> int:
        try:
            with open(f"{self.sys_root}/block/{kname}/md/degraded") as fh:
                return int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    # LUKS
    def luks(self, step: dict) -> None:
        uuid, name = str(step["uuid"]), str(step["name"])
        holder: list[str] = []

        def find() -> str | None:
            found = self.find_luks(uuid, str(step.get("backing") or ""))
            if found:
                holder.append(found)
                return None
            return f"no block device holds the LUKS header UUID={uuid}"

        reason = self._until(time.monotonic() + self.timeout, find)
        if reason is not None:
            raise CaptureError(f"LUKS volume {name}: {reason}")
        argv = ["cryptsetup", "open", "--type", "luks", "--key-file", str(step["key_file"])]
        if step.get("keyfile_offset"):
            argv += ["--keyfile-offset", str(step["keyfile_offset"])]
        if step.get("keyfile_size"):
            argv += ["--keyfile-size", str(step["keyfile_size"])]
        proc = self.run([*argv, "--", holder[0], name])
        if proc.returncode != 0:
            raise CaptureError(f"LUKS volume {name} (UUID={uuid}) on {holder[0]} did not open "
                               f"with its key file: {_last_line(proc)}")  # fmt: skip
        self.log.info(f"LUKS volume {name} opened from {holder[0]}")

    def find_luks(self, uuid: str, expected: str = "") -> str | None:
        """The /dev node whose LUKS header has *uuid* (blkid's job, without blkid).

        *expected* (the first kernel's name, stable for /dev/mapper names) is tried first.
        A device another one is built on is skipped: a thin pool's data device holds the
        thin volume's first block, header included, at offset 0.
        """
        if expected and self._luks_uuid(expected) == uuid.lower():
            return expected
        try:
            names = sorted(os.listdir(f"{self.sys_root}/class/block"))
        except OSError:
            return None
        for name in names:
            try:
                if os.listdir(f"{self.sys_root}/class/block/{name}/holders"):
                    continue
            except OSError:
                pass  # no holders directory: nothing is built on it
            node = f"{self.dev_root}/{name}"
            if self._luks_uuid(node) == uuid.lower():
                return node
        return None

    @staticmethod
    def _luks_uuid(node: str) -> str | None:
        try:
            with open(node, "rb") as fh:
                header = fh.read(LUKS_UUID.stop)
        except OSError:
            return None
        if not header.startswith(LUKS_MAGIC):
            return None
        return header[LUKS_UUID].rstrip(b"\0").decode("ascii", "replace").lower()

    # LVM
    def lvm(self, step: dict) -> None:
        vg, lv = str(step["vg"]), str(step["lv"])
        what = f"LVM {'thin ' if step.get('thin') else ''}volume {vg}/{lv}"

        def activate() -> str | None:
            proc = self.run(["lvm", "lvchange", "-ay", "--", f"{vg}/{lv}"])
            if proc.returncode == 0 and os.path.exists(str(step["device"])):
                return None
            return _last_line(proc)

        reason = self._until(time.monotonic() + self.timeout, activate)
        if reason is not None:
            raise CaptureError(f"{what} did not activate: {reason}")
        self.log.info(f"{what} active")


def _chap_options(path: object) -> list[str]:
    """iscsistart's CHAP options from the plan's secrets file (0400, kept out of the plan)."""
    if not path:
        return []
    try:
        with open(str(path)) as fh:
            chap = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CaptureError(f"{path}: CHAP settings unreadable: {exc}") from None
    options = []
    for flag, key in (("-u", "username"), ("-w", "password"), ("-U", "username_in"),
                      ("-W", "password_in")):  # fmt: skip
        if chap.get(key):
            options += [flag, str(chap[key])]
    return options


def failure(path: str = FAILURE) -> str | None:
    """The reason /init's stack bring-up recorded, or None when it came up (or had none)."""
    try:
        with open(path) as fh:
            return fh.read().strip() or "the dump target's storage stack did not come up"
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror}"


def log_lines(path: str = LOG) -> list[str]:
    """What the bring-up logged (empty when there was none), for the capture's log."""
    try:
        with open(path, errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def main(plan_path: str = PLAN, failure_path: str = FAILURE, log_path: str = LOG) -> int:
    """/init's step: bring the plan up; record the reason on failure (exit status 1).
    Either way its lines are kept in *log_path* for kexec-dmesg.log."""
    log = CaptureLog()
    timeout = float(os.environ.get("KDUMP_DEVICE_TIMEOUT") or 60)
    try:
        with open(plan_path) as fh:
            plan = json.load(fh)
        StackUp(log, timeout).bring_up(plan)
        status = 0
    except (OSError, ValueError, KeyError, CaptureError, subprocess.SubprocessError) as exc:
        reason = str(exc) if isinstance(exc, CaptureError) else f"{plan_path}: {exc}"
        log.error(reason)  # the capture side says it again, as the failure's reason
        private_dir(os.path.dirname(failure_path))
        replace(failure_path, (reason + "\n").encode())
        status = 1
    private_dir(os.path.dirname(log_path))
    replace(log_path, log.text().encode())
    return status


if __name__ == "__main__":
    sys.exit(main())
