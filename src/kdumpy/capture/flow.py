"""The save flow, in kdump-utils' order (kdump.sh: do_kdump_pre, do_dump, do_kdump_post,
save_log, then final_action; on failure the emergency hooks and failure_action).

A dump is never reported as saved unless the collector succeeded, the file was synced and
renamed from ``vmcore-incomplete``; a failed save leaves ``vmcore-incomplete`` behind for
inspection.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

from kdumpy.capture import CaptureError, fence, lastfail, layout, stacks
from kdumpy.capture.actions import Actions
from kdumpy.capture.dmesg import kernel_log
from kdumpy.capture.hooks import HOOK_DIRS, run_emergency, run_post, run_pre
from kdumpy.capture.log import CaptureLog, kernel_messages
from kdumpy.capture.targets import Destination, open_target
from kdumpy.errors import KdumpyError
from kdumpy.service.config import (
    CAPTURE_MOUNTPOINT,
    DEFAULT_CONFIG_PATH,
    KdumpConfig,
    Target,
    load_config,
)

# dump_to_rootfs: "<fstype> <device>" of the first kernel's root, written by the initramfs
# builder; mounted here.
ROOTFS_FILE = "/etc/kdump/rootfs"
ROOTFS_MOUNTPOINT = "/sysroot"


@dataclass
class CaptureOptions:
    config: str = str(DEFAULT_CONFIG_PATH)
    vmcore: str = "/proc/vmcore"
    mountpoint: str = CAPTURE_MOUNTPOINT
    require_mount: bool = True  # False: mountpoint is a prepared directory (host runs)
    cmdline: str | None = None  # default: /proc/cmdline
    hook_dirs: Path = HOOK_DIRS
    rootfs_file: str = ROOTFS_FILE
    rootfs_mountpoint: str = ROOTFS_MOUNTPOINT
    ssh_config: str | None = None  # ssh -F file (host runs); default: ssh's own lookup
    known_hosts: str | None = None  # default: /root/.ssh/known_hosts from the initramfs
    stack_failure: str = stacks.FAILURE  # /init's record of a target stack that failed
    stack_log: str = stacks.LOG  # /init's stack bring-up lines, for kexec-dmesg.log
    record_failure: bool = True  # the reason on the root filesystem (capture/lastfail.py)


@dataclass
class CaptureResult:
    ok: bool
    where: str = ""  # the dump directory (or device) when something was written
    files: list[str] = field(default_factory=list)
    error: str = ""


def run_capture(opts: CaptureOptions, log: CaptureLog, actions: Actions) -> CaptureResult:
    """The whole capture, ending with final_action (or failure_action)."""
    log.include(stacks.log_lines(opts.stack_log))
    try:
        cfg = load_config(opts.config)
    except KdumpyError as exc:
        # Nothing tells us what to do: kdump-utils' defaults (failure_action reboot).
        log.error(f"{exc}; nothing saved")
        actions.machine("reboot")
        return CaptureResult(False, error=str(exc))
    for warning in cfg.warnings:
        log.warn(warning)
    fence.start(cfg, log)  # kdump.sh: fence_kdump_notify, in the background, before kdump_pre
    if not run_pre(cfg.kdump_pre, log, opts.hook_dirs):
        actions.machine(cfg.final_action)
        return CaptureResult(False, error="kdump_pre failed")
    dest: Destination | None = None
    result = CaptureResult(False)
    try:
        broken = stacks.failure(opts.stack_failure)
        if broken is not None:
            raise CaptureError(f"dump target stack: {broken}")
        dest = open_target(
            cfg, log, opts.mountpoint, opts.require_mount, opts.ssh_config, opts.known_hosts
        )
        save(cfg, dest, opts, log, result)
    except CaptureError as exc:
        log.error(str(exc))
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug must still end in failure_action
        log.error(f"internal error: {type(exc).__name__}: {exc}")
        log.info("".join(traceback.format_exception(exc)).rstrip())
        result.error = f"internal error: {exc}"
    run_post(cfg.kdump_post, 0 if result.ok else 1, log, opts.hook_dirs)
    if result.ok:
        assert dest is not None
        finish(dest, log, result, test=_test_id(opts) is not None)
        log.info(f"saved vmcore to {result.where}")
        actions.machine(cfg.final_action)
        return result
    if dest is not None and result.where:
        _save_log(dest, log)
        dest.close()
    fail(cfg, opts, log, actions, result.error)
    return result


def save(
    cfg: KdumpConfig,
    dest: Destination,
    opts: CaptureOptions,
    log: CaptureLog,
    result: CaptureResult,
) -> None:
    """Prepare the target, then vmcore-dmesg.txt, then the dump; CaptureError on failure.

    *result* is filled as the save goes, so a failure still says where it got to.
    """
    log.info(f"saving vmcore to {dest.describe()}")
    dest.prepare()
    test_id = _test_id(opts)
    if dest.has_files:
        dest.make_dump_dir(cfg.path, layout.dump_dir_name(dest.host_ip(), test_id=test_id))
        result.where = dest.where()
        if test_id:
            dest.write_file(layout.TEST_STATUS, b"fail\n")
        result.files += save_dmesg(dest, opts.vmcore, log)
    collector = cfg.collector_argv()
    log.info(f"saving the dump with: {' '.join(collector)}")
    result.files.append(dest.save_dump(collector, opts.vmcore))
    result.where = dest.where()
    result.ok = True


def save_dmesg(dest: Destination, vmcore: str, log: CaptureLog) -> list[str]:
    """vmcore-dmesg.txt first: it is small and useful even if the dump never completes."""
    try:
        text, tool = kernel_log(vmcore)
    except CaptureError as exc:
        log.warn(f"no vmcore-dmesg.txt: {exc}")
        return []
    dest.write_file(layout.DMESG_INCOMPLETE, text)
    dest.rename(layout.DMESG_INCOMPLETE, layout.DMESG)
    log.info(f"saved {layout.DMESG} ({len(text)} bytes, read by {tool})")
    return [layout.DMESG]


def finish(dest: Destination, log: CaptureLog, result: CaptureResult, test: bool) -> None:
    """After a good save: kexec-dmesg.log, the test status, unmount."""
    if dest.has_files:
        if test:
            dest.write_file(layout.TEST_STATUS, b"success\n")
        _save_log(dest, log)
        result.files.append(layout.KEXEC_LOG)
    dest.close()


def _save_log(dest: Destination, log: CaptureLog) -> None:
    """kexec-dmesg.log: the capture kernel's own log and ours (best effort)."""
    if not dest.has_files:
        return
    data = (kernel_messages() + log.text()).encode()
    try:
        dest.write_file(layout.KEXEC_LOG, data)
    except CaptureError as exc:
        log.warn(f"cannot save {layout.KEXEC_LOG}: {exc}")


def fail(
    cfg: KdumpConfig, opts: CaptureOptions, log: CaptureLog, actions: Actions, reason: str = ""
) -> None:
    """Emergency hooks, then failure_action (and final_action after shell/dump_to_rootfs);
    first the reason goes to the root filesystem for the next boot's ``kdumpy status``."""
    log.error(f"saving vmcore failed; failure_action {cfg.failure_action}")
    if opts.record_failure:
        lastfail.record(reason or "saving vmcore failed", opts.rootfs_file,
                        opts.rootfs_mountpoint, log)  # fmt: skip
    run_emergency(cfg.kdump_emergency, log, opts.hook_dirs)
    if cfg.failure_action == "shell":
        actions.shell()
    elif cfg.failure_action == "dump_to_rootfs":
        dump_to_rootfs(cfg, opts, log)
    else:
        actions.machine(cfg.failure_action)
        return
    actions.machine(cfg.final_action)


def dump_to_rootfs(cfg: KdumpConfig, opts: CaptureOptions, log: CaptureLog) -> CaptureResult:
    """Save to the first kernel's root filesystem instead (same ``path``)."""
    try:
        with open(opts.rootfs_file) as fh:
            kind, spec = fh.read().split()[:2]
    except (OSError, ValueError):
        log.error(f"dump_to_rootfs: {opts.rootfs_file} does not name the root filesystem")
        return CaptureResult(False, error="no root filesystem")
    rootfs = replace(cfg, target=Target(kind, spec))
    log.info(f"dump_to_rootfs: trying {kind} {spec}")
    dest = open_target(rootfs, log, opts.rootfs_mountpoint)
    result = CaptureResult(False)
    try:
        save(rootfs, dest, opts, log, result)
    except CaptureError as exc:
        log.error(f"dump_to_rootfs: {exc}")
        return CaptureResult(False, error=str(exc))
    finish(dest, log, result, test=False)
    log.info(f"saved vmcore to {result.where}")
    return result


def _test_id(opts: CaptureOptions) -> str | None:
    cmdline = opts.cmdline
    if cmdline is None:
        try:
            cmdline = Path("/proc/cmdline").read_text()
        except OSError:
            cmdline = ""
    return layout.test_id_from_cmdline(cmdline)


def umask_private() -> None:
    """Everything the capture side creates is the crashed machine's memory: owner only."""
    os.umask(0o077)
