"""``/etc/sysconfig/kdump``-style settings: the capture kernel's command line and kexec args.

A shell-variable file (``KEY="value"``), read without running a shell: values are
tokenised with :mod:`shlex`, never expanded.  kdump-utils' template values for this
architecture apply to keys the file leaves out (and to every key without a file).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from kdumpy.arch.kdump_select import kdump_machine
from kdumpy.service.config import ConfigError

SYSCONFIG_PATHS = (Path("/etc/sysconfig/kdump"), Path("/etc/default/kdump"))

# kdump-utils' gen-kdump-sysconfig.sh (v1.0.61): a common part, then the architecture's
# (kdumpy.arch.<machine>.kdump; the generic record for a machine it does not list).
_REMOVE_COMMON = (
    "hugepages hugepagesz slub_debug quiet log_buf_len swiotlb hugetlb_cma ignition.firstboot"
)
# initramfs_options=size=90%: the capture kernel's rootfs may fill 90 % of its memory
# while the initramfs unpacks (the kernel's default is 50 %).
_APPEND_COMMON = "novmcoredd hugetlb_cma=0 kfence.sample_interval=0 initramfs_options=size=90%"


def _join(common: str, arch_value: str) -> str:
    return f"{common} {arch_value}".strip()


def template_defaults(arch: str) -> dict[str, str]:
    """The values kdump-utils' generated /etc/sysconfig/kdump holds on ``arch``."""
    machine = kdump_machine(arch)
    return {
        "KDUMP_KERNELVER": "",
        "KDUMP_COMMANDLINE": "",
        "KDUMP_COMMANDLINE_REMOVE": _join(_REMOVE_COMMON, machine.commandline_remove),
        "KDUMP_COMMANDLINE_APPEND": _join(_APPEND_COMMON, machine.commandline_append),
        "FADUMP_COMMANDLINE_APPEND": machine.fadump_append,
        "KEXEC_ARGS": machine.kexec_args,
        "KDUMP_BOOTDIR": "",
        "KDUMP_IMG": "vmlinuz",
        "KDUMP_IMG_EXT": "",
        "VMCORE_CREATION_NOTIFICATION": "yes",
        "KDUMP_STDLOGLVL": "",
        "KDUMP_SYSLOGLVL": "",
        "KDUMP_KMSGLOGLVL": "",
    }


_DEFAULTS = template_defaults(os.uname().machine)
DEFAULT_REMOVE = _DEFAULTS["KDUMP_COMMANDLINE_REMOVE"]
DEFAULT_APPEND = _DEFAULTS["KDUMP_COMMANDLINE_APPEND"]
KNOWN_KEYS = tuple(_DEFAULTS)
# Logging levels of kdumpctl's logger: kdumpy reports through its own output, so these are
# checked (0-4, as kdump-logger.sh takes them) and have no other effect.
LOG_LEVEL_KEYS = ("KDUMP_STDLOGLVL", "KDUMP_SYSLOGLVL", "KDUMP_KMSGLOGLVL")


@dataclass(frozen=True)
class Sysconfig:
    """Command line and kernel choices for the capture kernel.

    A key the file leaves out takes the value kdump-utils' template gives it on this
    architecture (kdumpctl would leave it empty; the template's values are the safe ones).
    """

    commandline: str = ""
    commandline_remove: str = DEFAULT_REMOVE
    commandline_append: str = DEFAULT_APPEND
    fadump_commandline_append: str = _DEFAULTS["FADUMP_COMMANDLINE_APPEND"]
    kernelver: str = ""
    kexec_args: str = _DEFAULTS["KEXEC_ARGS"]
    bootdir: str = ""  # KDUMP_BOOTDIR: where to look for the kernel first
    img: str = "vmlinuz"  # KDUMP_IMG and KDUMP_IMG_EXT: the kernel file is <img>-<release><ext>
    img_ext: str = ""
    vmcore_creation_notification: bool = True
    source: str | None = None


def find_sysconfig() -> Path | None:
    """The first sysconfig file that exists, or None (defaults apply)."""
    return next((p for p in SYSCONFIG_PATHS if p.exists()), None)


def load_sysconfig(path: str | Path | None = None) -> Sysconfig:
    """Read a sysconfig file; with no path, the first of SYSCONFIG_PATHS that exists."""
    found = Path(path) if path is not None else find_sysconfig()
    if found is None:
        return Sysconfig()
    try:
        text = found.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{found}: cannot read: {exc}") from None
    return parse_sysconfig(text, str(found))


def parse_sysconfig(text: str, source: str) -> Sysconfig:
    """Parse ``KEY=value`` lines; unknown keys and shell syntax are errors (file:line).

    Each line is split as the shell would (:mod:`shlex`): ``KEY="a b='x y'"`` gives
    ``a b='x y'``, whose own quotes the command line builder honours in turn.
    """
    values = dict(_DEFAULTS)
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not words:
            continue
        if len(words) != 1 or "=" not in words[0]:
            raise ConfigError(f"{where}: expected KEY=value, not {raw.strip()!r}")
        key, _, value = words[0].partition("=")
        if "$" in value or "`" in value:
            raise ConfigError(f"{where}: shell expansion is not supported in {key}")
        if key not in values:
            raise ConfigError(f"{where}: unknown setting {key}")
        if key in LOG_LEVEL_KEYS and value not in ("", "0", "1", "2", "3", "4"):
            raise ConfigError(f"{where}: {key} must be a log level 0-4, not {value!r}")
        values[key] = value
    return Sysconfig(
        commandline=values["KDUMP_COMMANDLINE"],
        commandline_remove=values["KDUMP_COMMANDLINE_REMOVE"],
        commandline_append=values["KDUMP_COMMANDLINE_APPEND"],
        fadump_commandline_append=values["FADUMP_COMMANDLINE_APPEND"],
        kernelver=values["KDUMP_KERNELVER"],
        kexec_args=values["KEXEC_ARGS"],
        bootdir=values["KDUMP_BOOTDIR"],
        img=values["KDUMP_IMG"],
        img_ext=values["KDUMP_IMG_EXT"],
        # kdump-utils enables the notification for "yes" only (any case).
        vmcore_creation_notification=values["VMCORE_CREATION_NOTIFICATION"].lower() == "yes",
        source=source,
    )
