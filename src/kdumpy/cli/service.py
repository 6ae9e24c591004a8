"""The service commands (kdumpctl's): config check, estimate, reserve, showmem, start, stop,
restart, reload, status, rebuild, test, propagate, get-default-crashkernel,
reset-crashkernel, install-service (and the hidden hooks' _reset-crashkernel-*)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _say(line: str) -> None:
    print(line, flush=True)


def _confirm(question: str) -> bool:
    """Ask on the terminal; anything but y/yes is no (and no terminal means no)."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} (y/N) ").strip().lower() in ("y", "yes")


def _paths(args: argparse.Namespace):  # -> ServicePaths (imported lazily: fast --help)
    from kdumpy.service.paths import ServicePaths

    return ServicePaths(
        config=args.config,
        sysconfig=args.sysconfig,
        release=args.kernel_release or "",
    )


def _common(p: argparse.ArgumentParser) -> None:
    from kdumpy.service.config import DEFAULT_CONFIG_PATH

    p.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="kdump.conf (default %(default)s)"
    )
    p.add_argument(
        "--sysconfig",
        type=Path,
        default=None,
        help="KDUMP_COMMANDLINE_* file (default /etc/sysconfig/kdump or /etc/default/kdump)",
    )
    p.add_argument(
        "--kernel-release", default=None, help="kernel to load (default: the running one)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="check /etc/kdump.conf")
    csub = config.add_subparsers(dest="config_command", metavar="CONFIG_COMMAND")
    config.set_defaults(func=lambda args: config.print_help() or 2)
    check = csub.add_parser("check", help="parse a kdump.conf and report errors as file:line")
    check.add_argument("file", nargs="?", type=Path, help="default /etc/kdump.conf")
    check.add_argument("--sysconfig", type=Path, default=None, help="also check this file")
    check.set_defaults(func=cmd_config_check)

    for name, func, text in (
        ("start", cmd_start, "load the capture kernel (rebuilding its initramfs if stale)"),
        ("stop", cmd_stop, "unload the capture kernel"),
        ("restart", cmd_restart, "stop, then start"),
        ("reload", cmd_reload, "reload kernel and initramfs without rebuilding"),
        ("status", cmd_status, "is a capture kernel loaded? (exit 0 yes, 3 no)"),
        ("rebuild", cmd_rebuild, "rebuild the capture initramfs now"),
        ("estimate", cmd_estimate, "recommend a crashkernel= size for this machine"),
        ("showmem", cmd_showmem, "show the memory reserved for the capture kernel"),
    ):
        p = sub.add_parser(name, help=text)
        _common(p)
        p.set_defaults(func=func)

    reserve = sub.add_parser("reserve", help="set crashkernel= in the boot loader")
    reserve.add_argument(
        "size", nargs="?", help="crashkernel value (default: kdump-utils' default for here)"
    )
    reserve.add_argument("--yes", action="store_true", help="apply without asking")
    reserve.set_defaults(func=cmd_reserve)

    test = sub.add_parser("test", help="crash this machine now to test that a dump is saved")
    _common(test)
    test.add_argument("--force", action="store_true", help="do not ask for confirmation")
    test.set_defaults(func=cmd_test)

    propagate = sub.add_parser("propagate", help="install the ssh key on the ssh dump target")
    _common(propagate)
    propagate.add_argument("--yes", action="store_true", help="trust a new host key unasked")
    propagate.set_defaults(func=cmd_propagate)

    default = sub.add_parser(
        "get-default-crashkernel", help="print kdump-utils' default crashkernel= for here"
    )
    default.add_argument("dump_mode", nargs="?", choices=("kdump", "fadump"), default=None)
    default.add_argument("--kernel", default="", help="kernel release (aarch64: 64K pages?)")
    default.add_argument("--sysconfig", type=Path, default=None, help="capture CPUs from here")
    default.set_defaults(func=cmd_get_default_crashkernel)

    reset = sub.add_parser(
        "reset-crashkernel", help="set the default crashkernel= in the boot loader"
    )
    reset.add_argument(
        "--kernel", default=None, help="kernel path or release, ALL or DEFAULT (default: running)"
    )
    reset.add_argument("--fadump", choices=("on", "off", "nocma"), default=None, help="ppc64le")
    reset.add_argument("--sysconfig", type=Path, default=None, help="capture CPUs from here")
    reset.set_defaults(func=cmd_reset_crashkernel)
    for name, func in (
        ("_reset-crashkernel-for-installed-kernel", cmd_reset_for_installed_kernel),
        ("_reset-crashkernel-for-installed_kernel", cmd_reset_for_installed_kernel),
        ("_reset-crashkernel-after-update", cmd_reset_after_update),
    ):
        hidden = sub.add_parser(name)
        if func is cmd_reset_for_installed_kernel:
            hidden.add_argument("release")
        hidden.add_argument("--config", type=Path, default=None)
        hidden.set_defaults(func=func, sysconfig=None)

    install = sub.add_parser("install-service", help="install and enable kdumpy.service")
    install.add_argument("--no-enable", action="store_true", help="only write the unit file")
    install.set_defaults(func=cmd_install_service)


def cmd_config_check(args: argparse.Namespace) -> int:
    from kdumpy.service import collectorcheck, confcheck
    from kdumpy.service.config import DEFAULT_CONFIG_PATH, load_config
    from kdumpy.service.sysconfig import load_sysconfig

    path = args.file or DEFAULT_CONFIG_PATH
    config = load_config(path)
    confcheck.check(config)
    warnings = list(config.warnings)
    if config.uses_makedumpfile:
        warnings.append(
            collectorcheck.collector_warning(config.core_collector, os.uname().release) or ""
        )
    for warning in filter(None, warnings):
        print(f"kdumpy: warning: {warning}", file=sys.stderr)
    if args.sysconfig is not None:
        load_sysconfig(args.sysconfig)
    target = f"{config.target.kind} {config.target.spec}" if config.target else "(default: path)"
    print(f"{path}: OK (target {target}, path {config.path}, collector {config.core_collector[0]})")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from kdumpy.service import control

    return control.start(_paths(args), _say)


def cmd_stop(args: argparse.Namespace) -> int:
    from kdumpy.service import control

    return control.stop(_paths(args), _say)


def cmd_restart(args: argparse.Namespace) -> int:
    from kdumpy.service import control

    return control.restart(_paths(args), _say)


def cmd_reload(args: argparse.Namespace) -> int:
    from kdumpy.service import control

    return control.reload(_paths(args), _say)


def cmd_status(args: argparse.Namespace) -> int:
    from kdumpy.service import control

    return control.status(_paths(args), _say)


def cmd_rebuild(args: argparse.Namespace) -> int:
    from kdumpy.service import control, early

    paths = _paths(args)
    with control.service_lock(_say):
        result = control.rebuild(paths, _say)
        early.after_rebuild(paths, _say)  # refresh the early kdump copy, if enabled
    modules = " ".join(result.modules) or "-"
    print(
        f"{result.path}: {result.size / 2**20:.1f} MiB {result.compression} "
        f"({result.unpacked / 2**20:.1f} MiB unpacked, {result.files} entries, "
        f"{result.python_modules} Python modules, kernel modules: {modules})"
    )
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from kdumpy.service import kexec
    from kdumpy.service.crashkernel import system_size_gib
    from kdumpy.service.estimate import estimate, proc_modules, render

    paths = _paths(args)
    modules = _manifest_modules(paths.manifest)
    stack = _manifest_field(paths.manifest, "stack")
    try:
        loaded = proc_modules(Path("/proc/modules").read_text())
    except OSError:
        loaded = {}
    est = estimate(
        system_gib=system_size_gib(Path("/proc/iomem").read_text()),
        default_crashkernel=_default_crashkernel(paths.sysconfig, paths.kernel_release),
        reserved=kexec.crash_size(),
        vmlinuz=paths.kernel_image(),
        initramfs=paths.initrd,
        modules=modules,
        loaded_modules=loaded,
        stack=stack if isinstance(stack, dict) else None,
    )
    for line in render(est):
        print(line)
    return 0


def _default_crashkernel(
    sysconfig_path: Path | None, release: str = "", dump_mode: str | None = None
) -> str:
    """kdump-utils' default for this machine (its capture CPUs from the sysconfig file)."""
    from kdumpy.service import crashkernel_default
    from kdumpy.service.sysconfig import load_sysconfig

    sysconfig = load_sysconfig(sysconfig_path)
    platform = crashkernel_default.probe(release, sysconfig.commandline_append, dump_mode)
    if platform.dump_mode == "fadump":
        platform = crashkernel_default.probe(release, sysconfig.fadump_commandline_append, "fadump")
    return crashkernel_default.default_crashkernel(platform)


def _manifest_field(path: Path, name: str) -> object:
    """One field of the initramfs manifest (None without one)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(name) if isinstance(data, dict) else None


def _manifest_modules(path: Path) -> list[str]:
    """Kernel modules recorded in the initramfs manifest ([] without one)."""
    import json

    try:
        return list(json.loads(path.read_text()).get("modules", []))
    except (OSError, ValueError, AttributeError):
        return []


def cmd_showmem(args: argparse.Namespace) -> int:
    from kdumpy.service import kexec

    print(f"Reserved {kexec.crash_size() // 2**20}MB memory for crash kernel")
    return 0


def cmd_reserve(args: argparse.Namespace) -> int:
    from kdumpy.service import bootloader
    from kdumpy.service.crashkernel import parse_crashkernel

    value = args.size or _default_crashkernel(None)
    if value == "auto":
        value = _default_crashkernel(None)
        print(f"crashkernel=auto is not understood by current kernels: using {value}")
    parse_crashkernel(value)  # refuse what the kernel would reject
    change = bootloader.plan(value)
    print(change.description)
    if not args.yes and not _confirm(f"Set crashkernel={value} ({change.method})?"):
        print("Nothing changed.")
        return 1
    for note in bootloader.apply(change):
        print(note)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from kdumpy.service import control

    question = (
        "DANGER!!! This will crash the system now to test kdump: unsaved work is lost. Proceed?"
    )
    if not args.force and not _confirm(question):
        print("Not crashing.")
        return 1
    return control.crash_test(_paths(args), _say)


def cmd_propagate(args: argparse.Namespace) -> int:
    from kdumpy.service.config import load_config
    from kdumpy.service.propagate import propagate

    propagate(load_config(args.config), _say, (lambda q: True) if args.yes else _confirm)
    return 0


def cmd_install_service(args: argparse.Namespace) -> int:
    from kdumpy.service.kernel_hooks import install_kernel_hooks
    from kdumpy.service.unit import install_unit

    for line in install_unit(enable=not args.no_enable) + install_kernel_hooks():
        print(line)
    return 0


def cmd_get_default_crashkernel(args: argparse.Namespace) -> int:
    print(_default_crashkernel(args.sysconfig, args.kernel, args.dump_mode))
    return 0


def _machine(sysconfig: Path | None):  # -> reset.Machine (imported lazily: fast --help)
    from kdumpy.service import reset
    from kdumpy.service.crashkernel import system_size_gib

    return reset.Machine(
        default_for=lambda release, mode: _default_crashkernel(sysconfig, release, mode),
        arch=os.uname().machine,
        system_gib=system_size_gib(Path("/proc/iomem").read_text()),
        running_release=os.uname().release,
        report=_say,
        machine_id=reset.machine_id(),
    )


def cmd_reset_crashkernel(args: argparse.Namespace) -> int:
    from kdumpy.service import reset

    return reset.reset_crashkernel(_machine(args.sysconfig), args.kernel, args.fadump)


def _auto_reset_wanted(args: argparse.Namespace) -> bool:
    from kdumpy.service import reset
    from kdumpy.service.config import DEFAULT_CONFIG_PATH, load_config

    path = args.config or DEFAULT_CONFIG_PATH
    return path.exists() and reset.should_auto_reset(load_config(path))


def cmd_reset_for_installed_kernel(args: argparse.Namespace) -> int:
    from kdumpy.service import reset

    if _auto_reset_wanted(args):
        return reset.reset_for_installed_kernel(_machine(None), args.release)
    return 0


def cmd_reset_after_update(args: argparse.Namespace) -> int:
    from kdumpy.service import reset

    if _auto_reset_wanted(args):
        return reset.reset_after_update(_machine(None))
    return 0
