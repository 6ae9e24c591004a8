"""Pluggable userspaces for the lab's busybox guest.

A lab guest has two userspaces: the *first kernel's* (which runs a workload, loads the capture
kernel and crashes) and the *capture kernel's* (which saves /proc/vmcore).  Each is an object
with ``name`` and ``populate(stage, kernel)``: it puts its files and ``/init`` into the stage.
The capture side here is the minimal one (dd to a disk); kdumpy's own capture pipeline and the
Debian guest plug in the same way.

Run-time choices (which crash to cause, how big the workload is) travel on the kernel command
line as ``kdumpy.*=`` parameters, so a built initramfs is cached and reused across runs.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.initramfs import Stage
from kdumpy.lab.kernels import LabKernel

DATA = Path(__file__).with_name("data")
MARK = "kdumpy-lab:"

# Crash methods the busybox guest knows (kdumpy.crash=...).
CRASH_METHODS = {
    "sysrq": "echo c > /proc/sysrq-trigger (sysrq_handle_crash)",
    "oom": "vm.panic_on_oom=1 and a process that allocates until the OOM killer runs",
    "hung": "kernel.hung_task_panic=1 and a writer blocked on a frozen filesystem",
    "init": "init exits: 'Attempted to kill init!'",
    "none": "no crash: the guest idles until the timeout (tests the timeout path)",
    "null": "a test module dereferences NULL (oops, panic_on_oops=1)",
    "bug": "a test module calls BUG() (panic_on_oops=1)",
    "warn": "a test module calls WARN() (panic_on_warn=1)",
    "irq": "Alt+SysRq+C on the emulated PS/2 keyboard: sysrq_handle_crash in hard-IRQ context",
    "tasks": "1,000 sleeping processes, then echo c > /proc/sysrq-trigger (foreach bt at scale)",
}
# Methods that need the lab's test module (built only where the host's gcc matches).
MODULE_CRASHES = ("null", "bug", "warn")
# Methods the host completes: when the guest prints the marker, QEMU is sent the QMP
# command.  "irq": the i8042 keyboard interrupt runs the SysRq handler, which panics on
# the IRQ stack over whatever the CPU was doing (console: <IRQ> ... </IRQ> <TASK>).
_SYSRQ_C = [{"type": "qcode", "data": k} for k in ("alt", "sysrq", "c")]
CRASH_QMP: dict[str, tuple[str, tuple[str, dict[str, object]]]] = {
    "irq": (f"{MARK} press alt-sysrq-c", ("send-key", {"keys": _SYSRQ_C})),
}

CAPTURE_APPEND = (
    "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1 no_timer_check kdumpy.role=capture"
)


class Userspace(Protocol):
    name: str

    def populate(self, stage: Stage, kernel: LabKernel) -> None: ...

    def fingerprint(self) -> str: ...


COMMON_PRELUDE = f"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
log() {{ echo "{MARK} $*" > /dev/kmsg; }}
param() {{
    for w in $(cat /proc/cmdline); do case "$w" in "kdumpy.$1="*) echo "${{w#*=}}";; esac; done
}}
for m in $(cat /etc/modules-load); do insmod "/lib/modules/$m" || log "insmod $m failed"; done
"""


def build_workload(out: Path, compiler: str = "gcc", package: str = "gcc") -> None:
    """Compile the static workload helper (guests have no libc) with *compiler*."""
    if shutil.which(compiler) is None:
        raise KdumpyError(f"{compiler} not found: install {package} (the guest workload helper)")
    proc = subprocess.run(
        [compiler, "-static", "-O2", "-o", str(out), str(DATA / "workload.c")],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise KdumpyError(f"building the guest workload failed: {proc.stderr.strip()[-200:]}")


class DdCapture:
    """Capture userspace: copy /proc/vmcore to the first virtio disk with dd, power off."""

    name = "busybox-dd"
    modules = ["virtio_pci", "virtio_blk"]

    def fingerprint(self) -> str:
        return self.name + self.script()

    def script(self) -> str:
        return (
            COMMON_PRELUDE
            + """
log "capture kernel up"
if [ ! -e /proc/vmcore ]; then log "capture failed: no /proc/vmcore"; poweroff -f; fi
if dd if=/proc/vmcore of=/dev/vda bs=1M 2>/tmp/dd.err; then
    sync
    log "vmcore saved"
else
    log "capture failed: $(tail -n 1 /tmp/dd.err)"
fi
poweroff -f
"""
        )

    def populate(self, stage: Stage, kernel: LabKernel) -> None:
        stage.add_busybox()
        loaded = stage.add_modules(kernel, self.modules)
        stage.add_text("etc/modules-load", "\n".join(loaded) + "\n")
        stage.add_text("init", self.script(), 0o755)


class BusyboxWorkload:
    """First-kernel userspace: a workload that gives every dump-level bit pages, then a crash.

    * zero pages: a process that write-faults zero-filled anonymous memory ("kdumpy-zero");
    * page cache without private data: files read from an ext4 disk;
    * page cache with private data (ext4 buffer heads): files written to it and synced;
    * anonymous user memory: "kdumpy-anon" fills memory with a pattern;
    * free memory: whatever is left;
    * known processes: sleeping ("sleep"), D state ("kdumpy-dstate", a vfork parent, and
      "kdumpy-frozen", a writer blocked on a frozen ext4), kernel threads.
    """

    name = "busybox-workload"
    modules = ["virtio_pci", "virtio_blk"]

    def __init__(
        self,
        capture_initrd: Path,
        capture_append: str = CAPTURE_APPEND,
        crash_module: Path | None = None,
    ) -> None:
        self.capture_initrd = capture_initrd
        self.capture_append = capture_append
        self.crash_module = crash_module

    def fingerprint(self) -> str:
        # The capture initrd's name carries its own content hash; the test module's bytes
        # must count too, or a cached initrd without it would be reused.
        module = self.crash_module.read_bytes() if self.crash_module else b""
        return "\0".join(
            (
                self.name,
                self.script(),
                (DATA / "workload.c").read_text(),
                str(self.capture_initrd),
                hashlib.sha256(module).hexdigest(),
            )
        )

    def load_script(self) -> str:
        """Shell lines that load the capture kernel and log the outcome."""
        append = shlex.quote(self.capture_append)
        kexec = "kexec -s -p /boot/vmlinuz --initrd=/boot/capture.img"
        return f"""if {kexec} --append={append} 2>/tmp/kexec.err \\
   || kexec -p /boot/vmlinuz --initrd=/boot/capture.img --append={append} 2>>/tmp/kexec.err; then
    log "capture kernel loaded ($(cat /sys/kernel/kexec_crash_loaded))"
else
    log "kexec load failed: $(tail -n 1 /tmp/kexec.err)"
fi"""

    def script(self) -> str:
        return (
            COMMON_PRELUDE
            + f"""
log "first kernel up"
crash=$(param crash); crash=${{crash:-sysrq}}
anon=$(param anon); anon=${{anon:-64}}
zero=$(param zero); zero=${{zero:-32}}
if mount -t ext4 /dev/vdb /mnt; then
    cat /mnt/data/* > /dev/null
    mkdir -p /mnt/written
    i=0; while [ $i -lt 8 ]; do
        dd if=/mnt/data/file$i of=/mnt/written/copy$i bs=64k 2>/dev/null; i=$((i+1)); done
    sync
else
    log "workload disk missing"
fi
workload zero "$zero" &
workload anon "$anon" &
sleep 1000000 &
workload dstate &
if [ "$crash" != oom ] && [ -d /mnt/written ]; then
    workload freeze /mnt && (workload write /mnt/written/blocked &)
fi
sleep 2
log "workload ready"
{self.load_script()}
log "crashing by $crash"
case "$crash" in
    sysrq) echo c > /proc/sysrq-trigger ;;
    tasks) i=0; while [ $i -lt 1000 ]; do sleep 1000000 & i=$((i+1)); done
           sleep 5; echo c > /proc/sysrq-trigger ;;
    oom) echo 1 > /proc/sys/vm/panic_on_oom; workload oom ;;
    hung) echo 1 > /proc/sys/kernel/hung_task_panic
          echo 3 > /proc/sys/kernel/hung_task_timeout_secs ;;
    init) exit 1 ;;
    null|bug) echo 1 > /proc/sys/kernel/panic_on_oops
              insmod /lib/modules/kdumpy_crash.ko how=$crash ;;
    warn) echo 1 > /proc/sys/kernel/panic_on_warn
          insmod /lib/modules/kdumpy_crash.ko how=$crash ;;
    irq) echo 1 > /proc/sys/kernel/sysrq; log "press alt-sysrq-c" ;;
    none) ;;
    *) log "unknown crash method $crash" ;;
esac
# A crash that did not happen must not leave the host waiting for its whole timeout.
if [ "$crash" != none ]; then
    sleep 120
    log "no crash 120 s after crashing by $crash"
    poweroff -f
fi
sleep 1000000
"""
        )

    def populate(self, stage: Stage, kernel: LabKernel) -> None:
        stage.add_busybox()
        loaded = stage.add_modules(kernel, self.modules)
        stage.add_text("etc/modules-load", "\n".join(loaded) + "\n")
        stage.add_binary("kexec")
        workload = stage.root / "bin" / "workload"
        build_workload(workload)
        stage.add_file(kernel.vmlinuz, "boot/vmlinuz")
        stage.add_file(self.capture_initrd, "boot/capture.img")
        if self.crash_module is not None:
            stage.add_file(self.crash_module, "lib/modules/kdumpy_crash.ko")
        stage.add_text("init", self.script(), 0o755)


def build_initrd(kernel: LabKernel, userspace: Userspace) -> Path:
    """Build (or reuse from the cache) the initramfs of *userspace* for *kernel*."""
    key = hashlib.sha256(f"{kernel.release}\0{userspace.fingerprint()}".encode()).hexdigest()[:16]
    out = cache_root() / "initrd" / f"{kernel.version}-{userspace.name}-{key}.img"
    if out.exists():
        return out
    with locked(f"initrd-{key}"):
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            with Stage() as stage:
                userspace.populate(stage, kernel)
                stage.build(out)
    return out
