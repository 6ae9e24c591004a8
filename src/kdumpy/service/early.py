"""Early kdump: load the capture kernel from the system initramfs, not after boot.

A capture kernel loaded by a service once the system is up leaves the whole boot
unprotected.  ``kdumpy early enable`` puts the capture kernel, its initramfs and a small
loader (kexec-tools' ``kexec -s -p`` driven by a shell script; kdumpy's own kexec_load
loader with the system's python3 where the kernel lacks kexec_file_load and kdumpy has one
for the machine: :func:`check_early_loader`, :mod:`kdumpy.service.early_python`) into the
system initramfs, where it runs as the first init-top script (dracut: cmdline hook 00) when
``rd.earlykdump`` is on the command line (RHEL's 99earlykdump, for initramfs-tools and
dracut alike).  Nearly all of its time is kexec_file_load itself (benchmarks/
early_loader_bench.py), which grows with the capture initramfs' size.

``kdumpy start`` later finds the capture kernel loaded and leaves it in place
(:func:`kdumpy.service.early_state.start_note` says so); ``kdumpy rebuild`` refreshes the early copy
(:func:`after_rebuild`); ``kdumpy early status`` says whether boot-time crashes are
covered.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdumpy import fileio
from kdumpy.arch.kexec import legacy_loader
from kdumpy.errors import KdumpyError
from kdumpy.fileio import private_dir
from kdumpy.service import (
    bootloader,
    control,
    early_cmdline,
    early_generator,
    early_python,
    early_state,
    kexec,
)
from kdumpy.service.early_generator import Layout
from kdumpy.service.early_state import EarlyState, LogLine
from kdumpy.service.paths import ServicePaths
from kdumpy.service.sysconfig import Sysconfig

Report = Callable[[str], None]
LOADER = early_generator.DATA / "kdumpy-early.sh"
EXIT_NOT_COVERED = control.EXIT_NOT_OPERATIONAL
DEFAULT_LAYOUT = Layout()
GRUB_DEFAULT = bootloader.GRUB_DEFAULT


@dataclass(frozen=True)
class Options:
    """How to enable/disable: which generator, whether to touch the boot loader."""

    generator: str | None = None  # None: detect
    edit_bootloader: bool = True
    layout: Layout = DEFAULT_LAYOUT
    grub_default: Path = GRUB_DEFAULT


def _kexec_tool() -> str:
    found = shutil.which("kexec")
    if found is None:
        raise KdumpyError(
            "kexec (kexec-tools) is not installed: the system initramfs needs it to load the "
            "capture kernel at boot (apt install kexec-tools / dnf install kexec-tools)"
        )
    return found


def write_loader_files(
    state_dir: Path, sysconfig: Sysconfig, python: Path | None = None
) -> dict[str, Path]:
    """early.conf and the loader script, where the initramfs hook copies them from;
    ``python``: the interpreter of kdumpy's loader (None: kexec-tools loads)."""
    # Root's own directories (0700): the early initramfs hook copies from here into an
    # initramfs that carries the capture kernel and its ssh key.
    private_dir(state_dir)
    directory = private_dir(early_state.early_dir(state_dir))
    conf = directory / "early.conf"
    fileio.replace(conf, early_cmdline.render_early_conf(sysconfig, python).encode(), 0o600)
    loader = directory / "kdumpy-early.sh"
    fileio.replace(loader, LOADER.read_bytes(), 0o700)
    return {"early.conf": conf, "loader": loader}


def stage_python(state_dir: Path, loader: str) -> tuple[Path | None, int]:
    """For kdumpy's loader, its Python where the hook copies it from (else remove it);
    the interpreter and the bytes it adds to the system initramfs."""
    private_dir(state_dir)
    directory = private_dir(early_state.early_dir(state_dir))
    if loader != KDUMPY_LOADER:
        early_python.unstage(directory)
        return None, 0
    runtime = early_python.measure(early_python.find_python())
    return runtime.executable, early_python.stage(runtime, directory)


def refresh(
    paths: ServicePaths, generator: str, report: Report, layout: Layout = DEFAULT_LAYOUT,
    loader: str = "kexec-tools",
) -> EarlyState:  # fmt: skip
    """Regenerate the system initramfs with the current early copy and record its hashes.

    The caller holds the service lock and has made the capture initramfs current.
    """
    _config, sysconfig = control.load_settings(paths)
    python, python_bytes = stage_python(paths.state_dir, loader)
    files = write_loader_files(paths.state_dir, sysconfig, python)
    files = {"capture kernel": paths.kernel_image(), "capture initramfs": paths.initrd, **files}
    if not paths.initrd.exists():
        raise KdumpyError(f"{paths.initrd}: missing; run kdumpy rebuild first")
    release = paths.kernel_release
    target = early_generator.system_initramfs(generator, release, layout.root)
    before = target.stat().st_size if target.exists() else 0
    command = " ".join(early_generator.regenerate_command(generator, release))
    report(f"Regenerating {target} ({command})")
    for warning in early_generator.regenerate(generator, release).splitlines():
        if "kdumpy" in warning:
            report(warning)
    target = early_generator.system_initramfs(generator, release, layout.root)
    _protect(target, report)
    state = EarlyState(
        release=release,
        generator=generator,
        inputs=early_state.inputs(files),
        files={name: str(path) for name, path in files.items()},
        system_initramfs=str(target),
        size_before=before,
        size_after=target.stat().st_size if target.exists() else 0,
        enabled_at=time.time(),
        loader=loader,
        python_bytes=python_bytes,
    )
    previous = early_state.read(paths.state_dir, release)
    if previous is not None and previous.size_before:
        state.size_before = previous.size_before  # the size without the early stage
    early_state.write(paths.state_dir, state)
    return state


def _protect(initramfs: Path, report: Report) -> None:
    """Make the system initramfs readable by root only: it now carries the capture
    initramfs, with kdump.conf and, for ssh targets, the private key (initramfs-tools
    writes 0644).  A later regeneration by a kernel update resets the mode: status warns,
    kdumpy rebuild puts it back."""
    if _world_readable(initramfs):
        initramfs.chmod(0o600)
        report(f"{initramfs}: made readable by root only (it carries the capture initramfs)")


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False


def _bootloader(enable: bool, opts: Options, report: Report) -> None:
    if not opts.edit_bootloader:
        report(
            f"Boot loader left alone: {'add' if enable else 'remove'} {early_cmdline.ARG} yourself"
        )
        return
    try:
        change = early_cmdline.plan_bootloader(enable, opts.grub_default)
    except KdumpyError as exc:
        report(f"Warning: {exc}")
        return
    report(change.description)
    for note in bootloader.apply(change):
        report(note)


KEXEC_TOOLS = "kexec-tools"
KDUMPY_LOADER = "kdumpy"


def check_early_loader(
    machine: str,
    release: str,
    kernel_config: Path,
    generator: str = early_generator.INITRAMFS_TOOLS,
    python: Path | None = None,
) -> str:
    """Which loader the early stage uses: KEXEC_TOOLS or KDUMPY_LOADER; refuse where neither works.

    kexec-tools by default.  Where the kernel lacks kexec_file_load (CONFIG_KEXEC_FILE) and
    kdumpy has a kexec_load loader for the machine, kexec-tools' kexec_load is no option: on
    arm64 it places the kernel by ``_text`` from /proc/kallsyms, absent without
    KALLSYMS_ALL (Debian 12's arm64 kernels), and the header claims ~16 EiB.  There the early
    stage runs kdumpy's own loader (:mod:`kdumpy.arch.kexec`), as ``kdumpy start`` does, with
    ``python`` (the system's python3) copied into an initramfs-tools system initramfs."""
    if legacy_loader(machine) is None:
        return KEXEC_TOOLS  # kdumpy itself falls back to kexec-tools on this machine
    try:
        config = kernel_config.read_text(errors="replace").splitlines()
    except OSError:
        return KEXEC_TOOLS  # cannot tell: the boot test (kdumpy test) is the judge
    if "CONFIG_KEXEC_FILE=y" in config:
        return KEXEC_TOOLS
    if generator != early_generator.INITRAMFS_TOOLS:
        why = f"its early stage runs in initramfs-tools' system initramfs, not {generator}'s"
    elif python is None:
        why = "there is no python3 to run it"
    else:
        return KDUMPY_LOADER
    raise KdumpyError(
        f"{kernel_config}: {release} has no kexec_file_load (CONFIG_KEXEC_FILE), so on "
        f"{machine} early kdump needs kdumpy's own kexec_load loader, and {why}; early kdump "
        "is not available (kdumpy start loads with kdumpy's own loader)"
    )


def _python_or_none() -> Path | None:
    try:
        return early_python.find_python()
    except KdumpyError:
        return None


def loader_line(state: EarlyState) -> str:
    """Which loader the early stage runs, and what kdumpy's costs in the system initramfs."""
    if state.loader != KDUMPY_LOADER:
        return "Early stage loader: kexec-tools (kexec)"
    return (
        "Early stage loader: kdumpy's kexec_load loader (no kexec_file_load in this kernel); "
        f"its Python adds {state.python_bytes} bytes ({state.python_bytes / 2**20:.1f} MiB, "
        "uncompressed) to the system initramfs"
    )


def enable(paths: ServicePaths, report: Report, opts: Options = Options()) -> int:
    """Install the early stage, regenerate the system initramfs, add rd.earlykdump."""
    release = paths.kernel_release
    boot_config = opts.layout.root / "boot" / f"config-{release}"
    generator = opts.generator or early_generator.detect(opts.layout.root)
    loader = check_early_loader(
        platform.machine(), release, boot_config, generator, _python_or_none()
    )
    kexec_path = _kexec_tool() if loader == KEXEC_TOOLS else ""
    with control.service_lock(report):
        config, _sysconfig = control.load_settings(paths)
        reason = control.rebuild_reason(paths, config)
        if reason:
            report(f"Rebuilding {paths.initrd}: {reason}")
            control.rebuild(paths, report, config)
        for path in early_generator.install(generator, opts.layout, paths.state_dir, kexec_path):
            report(f"Installed {path}")
        try:
            state = refresh(paths, generator, report, opts.layout, loader)
        except KdumpyError:
            early_generator.remove(generator, opts.layout)  # no half-installed early stage
            raise
    _bootloader(True, opts, report)
    growth = (state.size_after - state.size_before) / 2**20
    report(
        f"Early kdump enabled ({generator}): {state.system_initramfs} is "
        f"{state.size_after / 2**20:.1f} MiB (+{growth:.1f} MiB for the capture kernel, "
        f"its initramfs and {'kexec' if loader == KEXEC_TOOLS else 'Python'})"
    )
    report(loader_line(state))
    report(f"It takes effect at the next boot with {early_cmdline.ARG} on the command line")
    return 0


def disable(paths: ServicePaths, report: Report, opts: Options = Options()) -> int:
    """Remove rd.earlykdump and the early stage, and regenerate the system initramfs."""
    release = paths.kernel_release
    with control.service_lock(report):
        state = early_state.read(paths.state_dir, release)
        generator = opts.generator or (
            state.generator if state else early_generator.detect(opts.layout.root)
        )
        _bootloader(False, opts, report)
        for path in early_generator.remove(generator, opts.layout):
            report(f"Removed {path}")
        target = early_generator.system_initramfs(generator, release, opts.layout.root)
        report(f"Regenerating {target}")
        early_generator.regenerate(generator, release)
        early_state.state_path(paths.state_dir, release).unlink(missing_ok=True)
    report(
        "Early kdump disabled; kdumpy start (kdumpy.service) still loads the capture kernel "
        "after boot"
    )
    return 0


def after_rebuild(paths: ServicePaths, report: Report, layout: Layout = DEFAULT_LAYOUT) -> None:
    """After ``kdumpy rebuild``: refresh the early copy when early kdump is enabled.

    The caller holds the service lock (this does not take it again).
    """
    state = early_state.read(paths.state_dir, paths.kernel_release)
    if state is None or not early_generator.installed(state.generator, layout):
        return
    refresh(paths, state.generator, report, layout, state.loader)
    report("Early kdump: system initramfs updated with the new capture initramfs")


@dataclass
class Coverage:
    """The answer of ``kdumpy early status``."""

    covered: bool
    lines: list[str]


def assess(paths: ServicePaths, cmdline: str, log: list[LogLine], loaded: bool,
           layout: Layout = DEFAULT_LAYOUT) -> Coverage:  # fmt: skip
    """Whether boot-time crashes are covered this boot, with the evidence, as text."""
    state = early_state.read(paths.state_dir, paths.kernel_release)
    lines = []
    if state is None:
        lines.append(f"Early kdump: not enabled for {paths.kernel_release} (kdumpy early enable)")
    else:
        hook = "installed" if early_generator.installed(state.generator, layout) else "MISSING"
        lines.append(
            f"Early kdump: enabled for {state.release} ({state.generator} stage {hook}, "
            f"in {state.system_initramfs})"
        )
        lines.append(loader_line(state))
    on_cmdline = early_cmdline.requested(cmdline)
    lines.append(
        f"{early_cmdline.ARG} on this boot's command line: {'yes' if on_cmdline else 'no'}"
    )
    lines += [f"Kernel log: [{ln.seconds:12.6f}] {ln.text}" for ln in log] or [
        "Kernel log: no early-kdump lines this boot"
    ]
    lines.append(
        f"Capture kernel loaded (/sys/kernel/kexec_crash_loaded): {'yes' if loaded else 'no'}"
    )
    if state is not None and _world_readable(Path(state.system_initramfs)):
        lines.append(
            f"Warning: {state.system_initramfs} is readable by other users and carries the "
            "capture initramfs; run kdumpy rebuild"
        )
    stale = early_state.stale_reasons(state) if state is not None else []
    lines += [f"Warning: the early copy is stale: {r}; run kdumpy rebuild" for r in stale]
    loaded_line = next((ln for ln in reversed(log) if early_state.LOADED in ln.text), None)
    failed = next((ln for ln in reversed(log) if early_state.FAILED in ln.text), None)
    if loaded and loaded_line is not None:
        verdict = (
            f"Boot-time crashes are covered: early kdump loaded the capture kernel "
            f"{loaded_line.seconds:.2f} s after the kernel started"
        )
        if stale:
            verdict += " (with a stale copy: run kdumpy rebuild)"
        return Coverage(True, [*lines, verdict])
    if failed is not None:
        why = failed.text
    elif state is None:
        why = "early kdump is not enabled"
    elif not on_cmdline:
        why = f"{early_cmdline.ARG} is not on this boot's command line"
    elif not log:
        why = f"the early stage did not run (is it in {state.system_initramfs}?)"
    else:
        why = "early kdump did not load the capture kernel"
    tail = "; crashes after kdumpy start are covered" if loaded else ""
    return Coverage(False, [*lines, f"Boot-time crashes are NOT covered: {why}{tail}"])


def status(paths: ServicePaths, report: Report, cmdline_file: Path = Path("/proc/cmdline")) -> int:
    """Print the evidence and the verdict; exit 0 when covered, 3 when not."""
    try:
        cmdline = cmdline_file.read_text()
    except OSError as exc:
        raise KdumpyError(f"{cmdline_file}: cannot read: {exc.strerror}") from None
    coverage = assess(paths, cmdline, early_state.early_log(), kexec.crash_loaded())
    for line in coverage.lines:
        report(line)
    return 0 if coverage.covered else EXIT_NOT_COVERED
