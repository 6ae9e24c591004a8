"""``python3 -m kdumpy.capture`` / ``kdumpy save``: the capture kernel's entry point."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kdumpy.capture.actions import Actions, in_capture_kernel
from kdumpy.capture.flow import CaptureOptions, run_capture, umask_private
from kdumpy.capture.log import CaptureLog
from kdumpy.service.config import CAPTURE_MOUNTPOINT, DEFAULT_CONFIG_PATH


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="kdump.conf to follow")
    parser.add_argument("--vmcore", default="/proc/vmcore", help="the dump to save")
    parser.add_argument(
        "--target-dir",
        help="use this prepared directory as the fs/NFS target's root (no mount check)",
    )
    parser.add_argument(
        "--no-action",
        action="store_true",
        help="do not reboot/halt/poweroff or start a shell: only report the action",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="carry out failure_action/final_action (reboot...) even where this does not "
        "look like a capture kernel (the capture initramfs's /init passes it)",
    )
    parser.add_argument("--cmdline", help="kernel command line to read kdump_test_id= from")
    parser.add_argument("--ssh-config", help="ssh client configuration file (ssh -F)")
    parser.add_argument("--known-hosts", help="known_hosts for ssh targets")


def run(args: argparse.Namespace) -> int:
    umask_private()
    log = CaptureLog()
    if not (args.no_action or args.force or in_capture_kernel()):
        log.error(
            "not a capture kernel (no /proc/vmcore or no elfcorehdr= on the kernel command "
            "line): saving ends in final_action, a reboot of this machine; use --no-action to "
            "save without it, or --force"
        )
        return 2
    opts = CaptureOptions(
        config=args.config,
        vmcore=args.vmcore,
        mountpoint=args.target_dir or CAPTURE_MOUNTPOINT,
        require_mount=args.target_dir is None,
        cmdline=args.cmdline,
        ssh_config=args.ssh_config,
        known_hosts=args.known_hosts,
        # The first kernel's root is written only by a real capture, not a trial run.
        record_failure=not args.no_action,
    )
    result = run_capture(opts, log, Actions(log, dry_run=args.no_action))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kdumpy save", description="save /proc/vmcore to the kdump.conf target"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
