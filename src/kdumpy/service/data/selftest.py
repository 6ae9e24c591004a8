"""Run by the capture initramfs's /init when there is no /proc/vmcore (a test boot).

Prints one line per check so that a test reading the serial console can tell what works.
"""

import importlib
import os
import sys
import time

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
    print("kdumpy-selftest: done", flush=True)


main()
