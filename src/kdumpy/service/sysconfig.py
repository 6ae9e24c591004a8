"""``/etc/sysconfig/kdump``-style settings: the capture kernel's command line and kexec args.

A shell-variable file (``KEY="value"``), read without running a shell: values are
tokenised with :mod:`shlex`, never expanded.  kdump-utils' defaults for x86_64 apply
to keys the file leaves out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from kdumpy.service.config import ConfigError

SYSCONFIG_PATHS = (Path("/etc/sysconfig/kdump"), Path("/etc/default/kdump"))

# kdump-utils gen-kdump-sysconfig.sh (common part and x86_64 part).
DEFAULT_REMOVE = (
    "hugepages hugepagesz slub_debug quiet log_buf_len swiotlb hugetlb_cma ignition.firstboot cma"
)
DEFAULT_APPEND = (
    "irqpoll nr_cpus=1 reset_devices cgroup_disable=memory mce=off numa=off "
    "udev.children-max=2 panic=10 acpi_no_memhotplug transparent_hugepage=never nokaslr "
    "hest_disable cma=0 pcie_ports=compat novmcoredd hugetlb_cma=0 kfence.sample_interval=0"
)
KNOWN_KEYS = {
    "KDUMP_COMMANDLINE": "",
    "KDUMP_COMMANDLINE_REMOVE": DEFAULT_REMOVE,
    "KDUMP_COMMANDLINE_APPEND": DEFAULT_APPEND,
    "KDUMP_KERNELVER": "",
    "KEXEC_ARGS": "",
    "VMCORE_CREATION_NOTIFICATION": "yes",
}
# RHEL keys that mean something only to kdumpctl's shell machinery: accepted, unused.
IGNORED_KEYS = (
    "KDUMP_BOOTDIR",
    "KDUMP_IMG",
    "KDUMP_IMG_EXT",
    "KDUMP_STDLOGLVL",
    "KDUMP_SYSLOGLVL",
    "KDUMP_KMSGLOGLVL",
    "FADUMP_COMMANDLINE_APPEND",
)


@dataclass(frozen=True)
class Sysconfig:
    """Command line and kernel choices for the capture kernel."""

    commandline: str = ""
    commandline_remove: str = DEFAULT_REMOVE
    commandline_append: str = DEFAULT_APPEND
    kernelver: str = ""
    kexec_args: str = ""
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
    """Parse ``KEY=value`` lines; unknown keys and shell syntax are errors (file:line)."""
    values = dict(KNOWN_KEYS)
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
        if key in IGNORED_KEYS:
            continue
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{where}: unknown setting {key}")
        values[key] = value
    return Sysconfig(
        commandline=values["KDUMP_COMMANDLINE"],
        commandline_remove=values["KDUMP_COMMANDLINE_REMOVE"],
        commandline_append=values["KDUMP_COMMANDLINE_APPEND"],
        kernelver=values["KDUMP_KERNELVER"],
        kexec_args=values["KEXEC_ARGS"],
        vmcore_creation_notification=values["VMCORE_CREATION_NOTIFICATION"] == "yes",
        source=source,
    )
