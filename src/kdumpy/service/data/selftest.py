"""Run by the capture initramfs's /init when there is no /proc/vmcore (a test boot).

Prints one line per check so that a test reading the serial console can tell what works.
"""

import importlib
import os
import sys
import time
from pathlib import Path

CHECKS = ("kdumpy", "kdumpy.service.config", "kdumpy.vmcore", "kdumpy.collect", "kdumpy.capture")


def main() -> None:
    print("kdumpy-selftest: python", sys.version.split()[0], flush=True)
    for name in CHECKS:
        start = time.monotonic()
        try:
            importlib.import_module(name)
            print(f"kdumpy-selftest: import {name} ok {time.monotonic() - start:.2f}s", flush=True)
        except Exception as exc:  # report every failure, keep checking the rest
            print(f"kdumpy-selftest: import {name} FAILED {exc!r}", flush=True)
    from kdumpy.service.config import CAPTURE_MOUNTPOINT, load_config

    config = load_config("/etc/kdump.conf")
    target = config.target
    assert target is not None  # the initramfs copy always names its target
    print("kdumpy-selftest: config target", target.kind, target.spec, flush=True)
    if target.kind not in ("raw", "ssh"):
        mounted = os.path.ismount(CAPTURE_MOUNTPOINT)
        print("kdumpy-selftest: target mounted", mounted, flush=True)
        if mounted:
            directory = CAPTURE_MOUNTPOINT + "/" + config.path.strip("/")
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, "kdumpy-selftest"), "w") as f:
                f.write("written by the kdumpy capture initramfs\n")
            print("kdumpy-selftest: wrote", directory + "/kdumpy-selftest", flush=True)
    check_kexec(CAPTURE_MOUNTPOINT + "/boot")
    print("kdumpy-selftest: done", flush=True)


def check_kexec(boot: str) -> None:
    """Report the reservation; with a kernel on the target, load and unload it for real."""
    from kdumpy.service import kexec

    print("kdumpy-selftest: kexec_crash_size", kexec.crash_size(), flush=True)
    kernel = os.path.join(boot, "vmlinuz")
    if not os.path.exists(kernel):
        return
    initrd = os.path.join(boot, "initrd.img")
    try:
        # The console this kernel was given (ttyS0 on x86, ttyAMA0 on arm64 -M virt).
        cmdline = Path("/proc/cmdline").read_text().split()
        consoles = " ".join(word for word in cmdline if word.startswith("console="))
        kexec.file_load(Path(kernel), Path(initrd), f"{consoles} nr_cpus=1 reset_devices")
        print("kdumpy-selftest: loaded", kexec.crash_loaded(), flush=True)
        if "kdumpy.selftest=crash" in Path("/proc/cmdline").read_text():
            print("kdumpy-selftest: crashing", flush=True)
            os.sync()
            with open("/proc/sysrq-trigger", "w") as f:
                f.write("c")
        kexec.unload()
        print("kdumpy-selftest: unloaded", not kexec.crash_loaded(), flush=True)
    except Exception as exc:
        print(f"kdumpy-selftest: kexec FAILED {exc}", flush=True)


main()
