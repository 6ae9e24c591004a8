"""start / stop / status / reload / restart / rebuild, with kdumpctl's messages and exit codes.

``status`` exits 0 when operational and 3 when not.  ``start`` accepts a capture kernel
that is already loaded (early kdump, or a second start) and leaves it in place.  All
commands hold an exclusive lock, like kdumpctl's flock on /run/lock/kdump (ours is in a
root-only directory, /run/kdumpy).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.fileio import private_dir
from kdumpy.service import (
    collectorcheck,
    confcheck,
    early_state,
    kexec,
    lastfail,
    manifest,
    propagate,
    teststatus,
)
from kdumpy.service.cmdline import (
    capture_cmdline,
    cpu0_apicid,
    watchdog_drivers,
    watchdog_params,
)
from kdumpy.service.config import KdumpConfig, load_config
from kdumpy.service.initramfs import BuildOptions, BuildResult, build_initramfs
from kdumpy.service.paths import LOCK_DIR, LOCK_NAME, ServicePaths
from kdumpy.service.sysconfig import Sysconfig, find_sysconfig, load_sysconfig

Report = Callable[[str], None]
EXIT_NOT_OPERATIONAL = 3


@contextlib.contextmanager
def service_lock(report: Report, lock_dir: Path = LOCK_DIR) -> Iterator[None]:
    """An exclusive lock; other instances wait, saying so (kdumpctl's message).

    The lock file lives in a 0700 directory of our own, opened without following a
    symbolic link: no other user can create it first, hold it, or redirect it."""
    lock = lock_dir / LOCK_NAME
    try:
        private_dir(lock_dir)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise KdumpyError(f"cannot create the lock {lock}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report("Another app is currently holding the kdump lock; waiting for it to exit...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sysconfig_path(paths: ServicePaths) -> Path | None:
    return paths.sysconfig if paths.sysconfig is not None else find_sysconfig()


def load_settings(paths: ServicePaths) -> tuple[KdumpConfig, Sysconfig]:
    """Both config files; errors (file:line) surface before anything is touched."""
    config = load_config(paths.config)
    confcheck.check(config)  # what only this machine can tell (fence_kdump_nodes)
    sysconfig = load_sysconfig(_sysconfig_path(paths))
    return config, sysconfig


def check_feasibility() -> None:
    if not kexec.crash_supported():
        raise KdumpyError("Kdump is not supported on this kernel")
    if kexec.crash_size() == 0:
        raise KdumpyError("No memory reserved for crash kernel")


def rebuild(paths: ServicePaths, report: Report, config: KdumpConfig | None = None) -> BuildResult:
    """Build the capture initramfs for the release to load and record its manifest."""
    config = config or load_config(paths.config)
    release = paths.kernel_release
    kernel = paths.kernel_image()
    # 0700: the initramfs (and the ssh key in it) is written here.
    private_dir(paths.state_dir)
    opts = BuildOptions(release=release, output=paths.initrd)
    modules_dir = Path("/lib/modules") / release
    current = manifest.inputs(config, _sysconfig_path(paths), kernel, modules_dir)
    result = build_initramfs(config, opts, report)
    manifest.write(
        paths.manifest,
        current,
        paths.initrd,
        {
            "size": result.size,
            "unpacked": result.unpacked,
            "modules": result.modules,
            "stack": result.stack,
        },  # fmt: skip
    )
    # kdumpctl: any rebuild invalidates the last test result.
    with contextlib.suppress(FileNotFoundError):
        if teststatus.read(paths).state != "pending":
            paths.test_status.unlink()
    return result


def rebuild_reason(paths: ServicePaths, config: KdumpConfig) -> str | None:
    if config.force_rebuild:
        return "force_rebuild is set"
    current = manifest.inputs(
        config,
        _sysconfig_path(paths),
        paths.kernel_image(),
        Path("/lib/modules") / paths.kernel_release,
    )
    reason = manifest.stale_reason(paths.manifest, paths.initrd, current)
    if reason and config.force_no_rebuild:
        if not paths.initrd.exists():
            raise KdumpyError(f"{paths.initrd} is missing and force_no_rebuild is set")
        return None
    return reason


def load_capture_kernel(paths: ServicePaths, sysconfig: Sysconfig, report: Report) -> None:
    """kexec_file_load the kernel with the capture initramfs and command line."""
    base = sysconfig.commandline or Path("/proc/cmdline").read_text()
    extra = teststatus.cmdline_extra(paths)
    extra += watchdog_params(watchdog_drivers(paths.kernel_release))
    cmdline = capture_cmdline(
        base, sysconfig.commandline_remove, sysconfig.commandline_append, extra, cpu0_apicid()
    )
    method = kexec.load(paths.kernel_image(), paths.initrd, cmdline, sysconfig.kexec_args.split())
    report(f"kexec: loaded kdump kernel ({method})")


def start(paths: ServicePaths, report: Report) -> int:
    with service_lock(report):
        try:
            config, sysconfig = load_settings(paths)
            check_feasibility()
            if kexec.crash_loaded():
                report("Kdump already running: [WARNING]")
                early_state.start_note(paths, report)
                teststatus.report_result(paths, config, report)
                lastfail.report_failure(paths, report)
                return 0
            propagate.check_target(config, report)
            if config.uses_makedumpfile:
                collector = collectorcheck.collector_warning(
                    config.core_collector, paths.kernel_release
                )
                if collector:
                    report(f"Warning: {collector}")
            early_warning = early_state.start_warning()
            if early_warning:
                report(early_warning)
            reason = rebuild_reason(paths, config)
            if reason:
                report(f"Rebuilding {paths.initrd}: {reason}")
                result = rebuild(paths, report, config)
                report(f"Capture initramfs: {result.size / 2**20:.1f} MiB")
            load_capture_kernel(paths, sysconfig, report)
        except KdumpyError as exc:
            report(f"kdump: {exc}")
            report("Starting kdump: [FAILED]")
            return 1
        report("Starting kdump: [OK]")
        teststatus.report_result(paths, config, report)
        lastfail.report_failure(paths, report)
        return 0


def stop(paths: ServicePaths, report: Report) -> int:
    with service_lock(report):
        try:
            kexec.unload()
        except KdumpyError as exc:
            report(f"kdump: {exc}")
            report("Stopping kdump: [FAILED]")
            return 1
        report("kexec: unloaded kdump kernel")
        report("Stopping kdump: [OK]")
        return 0


def status(paths: ServicePaths, report: Report) -> int:
    with service_lock(report):
        if kexec.crash_loaded():
            report("Kdump is operational")
            code = 0
        else:
            report("Kdump is not operational")
            code = EXIT_NOT_OPERATIONAL
        with contextlib.suppress(KdumpyError):
            teststatus.report_result(paths, load_config(paths.config), report)
        lastfail.report_failure(paths, report)
        return code


def reload(paths: ServicePaths, report: Report) -> int:
    """Reload kernel and initramfs without rebuilding (kdumpctl reload)."""
    with service_lock(report):
        try:
            _config, sysconfig = load_settings(paths)
            check_feasibility()
            if not kexec.crash_loaded():
                report("Kdump was not running: [WARNING]")
            else:
                kexec.unload()
            load_capture_kernel(paths, sysconfig, report)
        except KdumpyError as exc:
            report(f"kdump: {exc}")
            report("Reloading kdump: [FAILED]")
            return 1
        report("Reloading kdump: [OK]")
        return 0


def restart(paths: ServicePaths, report: Report) -> int:
    code = stop(paths, report)
    return start(paths, report) if code == 0 else code


def crash_test(paths: ServicePaths, report: Report) -> int:
    """Arm a test (pending status, kdump_test_id on the capture cmdline) and crash now.

    The caller asks for confirmation first; this really panics the machine.
    """
    with service_lock(report):
        if not kexec.crash_loaded():
            raise KdumpyError("Kdump is not operational: run kdumpy start first")
        _config, sysconfig = load_settings(paths)
        status = teststatus.TestStatus(
            "pending", teststatus.new_test_id(), boot_id=teststatus.boot_id()
        )
        teststatus.write(paths, status)
        kexec.unload()
        load_capture_kernel(paths, sysconfig, report)
        report(f"Test {status.test_id} armed; crashing the system now")
    os.sync()
    Path("/proc/sysrq-trigger").write_text("c")
    return 0  # not reached when the crash works
