"""failure_action and final_action: reboot, halt, poweroff, shell.

The commands are busybox's forced variants (there is no init to ask in the capture
initramfs).  If one returns, the magic SysRq key does the job, so a capture kernel never
sits idle holding the machine.  ``dump_to_rootfs`` is a save, handled in :mod:`.flow`.
"""

from __future__ import annotations

import os
import subprocess

from kdumpy.capture.log import CaptureLog

COMMANDS = {"reboot": ["reboot", "-f"], "halt": ["halt", "-f"], "poweroff": ["poweroff", "-f"]}
SYSRQ = {"reboot": "b", "halt": "o", "poweroff": "o"}


def in_capture_kernel(vmcore: str = "/proc/vmcore", cmdline: str = "/proc/cmdline") -> bool:
    """Whether this is a capture kernel: the kernel made /proc/vmcore, and its command line
    carries the ``elfcorehdr=`` that kexec (file_load or kexec-tools) adds for one.

    ``kdumpy save`` anywhere else would end in final_action: a reboot of a running machine.
    """
    try:
        with open(cmdline) as fh:
            params = fh.read().split()
    except OSError:
        return False
    return os.path.exists(vmcore) and any(p.startswith("elfcorehdr=") for p in params)


class Actions:
    """Carries out the machine-level actions; with *dry_run* it only records them.

    The dry run exists for running the save flow on a host (tests, ``kdumpy save
    --no-action``), where rebooting is not an option.
    """

    def __init__(self, log: CaptureLog, dry_run: bool = False) -> None:
        self.log = log
        self.dry_run = dry_run
        self.performed: list[str] = []

    def machine(self, action: str) -> None:
        """reboot, halt or poweroff now."""
        self.performed.append(action)
        self.log.info(f"{'would ' if self.dry_run else ''}{action}")
        if self.dry_run:
            return
        os.sync()
        try:
            subprocess.run(COMMANDS[action], check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log.error(f"{' '.join(COMMANDS[action])}: {exc}")
        try:
            with open("/proc/sysrq-trigger", "w") as trigger:
                trigger.write(SYSRQ[action])
        except OSError as exc:
            self.log.error(f"sysrq {SYSRQ[action]}: {exc.strerror}")

    def shell(self) -> None:
        """An interactive shell on the console (failure_action shell); returns when it exits."""
        self.performed.append("shell")
        self.log.info(f"{'would start' if self.dry_run else 'starting'} a shell; exit to continue")
        if self.dry_run:
            return
        env = dict(os.environ, PS1="kdump:${PWD}# ")
        try:
            subprocess.run(["/bin/sh", "-i"], env=env, check=False)
        except OSError as exc:
            self.log.error(f"/bin/sh: {exc.strerror}")
