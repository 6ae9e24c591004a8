"""The capture kernel's command line, built like kdump-utils' ``prepare_cmdline``.

Start from KDUMP_COMMANDLINE (or the running kernel's /proc/cmdline), drop the
parameters named in KDUMP_COMMANDLINE_REMOVE and those that must never reach a
capture kernel, then append KDUMP_COMMANDLINE_APPEND and per-machine extras.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

# Always removed (kdump-utils), plus rdinit: the capture initramfs's own /init must run.
ALWAYS_REMOVE = (
    "crashkernel",
    "panic_on_warn",
    "root",
    "rd.lvm.lv",
    "rd.luks.uuid",
    "rd.dm.uuid",
    "rd.md.uuid",
    "fcoe",
    "netroot",
    "rd.iscsi.initiator",
    "iscsi_initiator",
    "rdinit",
    "initrd",
    "BOOT_IMAGE",
)


def split_cmdline(cmdline: str) -> list[str]:
    """Split a kernel command line into parameters; double quotes protect spaces."""
    params: list[str] = []
    current: list[str] = []
    quoted = False
    for char in cmdline.strip():
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if current:
                params.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        params.append("".join(current))
    return params


def split_words(text: str) -> list[str]:
    """Split a KDUMP_COMMANDLINE* value as kdumpctl does (``xargs``: the shell's quoting,
    single or double), each parameter written back in the kernel's form: a value with
    spaces in double quotes (``b='x y'`` -> ``b="x y"``), the only quoting the kernel knows.

    A text the shell cannot split (an unmatched quote, as in ``/proc/cmdline`` holding
    ``x=it's``) is split the kernel's way instead.
    """
    try:
        words = shlex.split(text)
    except ValueError:
        return split_cmdline(text)
    return [kernel_param(w) for w in words if w]


def kernel_param(word: str) -> str:
    """One unquoted parameter in the kernel's quoting (double quotes around a value with
    whitespace)."""
    if not any(c.isspace() for c in word) or '"' in word:
        return word
    name, eq, value = word.partition("=")
    return f'{name}="{value}"' if eq else f'"{word}"'


def param_key(param: str) -> str:
    """The name of a parameter (before ``=``); the kernel treats - and _ alike in names."""
    return param.split("=", 1)[0].replace("-", "_")


def remove_params(params: Iterable[str], names: Iterable[str]) -> list[str]:
    """Drop every parameter whose name is in ``names`` (all its occurrences)."""
    drop = {param_key(n) for n in names}
    return [p for p in params if param_key(p) not in drop]


def cpu0_apicid(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The APIC id of CPU 0 (x86): the capture kernel must not try to bring it up."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "apicid":
            return int(value.strip())
    return None


def watchdog_drivers(
    release: str,
    sysfs: Path = Path("/sys/class/watchdog"),
    resolve: Callable[[str, str], list[str]] | None = None,
) -> list[str]:
    """The drivers of this machine's watchdog devices (kdump-lib.sh get_watchdog_drvs: each
    device's modalias resolved by ``modprobe -R``)."""
    lookup = resolve or _modprobe_resolve
    found: list[str] = []
    for modalias in sorted(sysfs.glob("*/device/modalias")):
        try:
            alias = modalias.read_text().strip()
        except OSError:
            continue
        for driver in lookup(alias, release):
            if driver not in found:
                found.append(driver)
    return found


def _modprobe_resolve(alias: str, release: str) -> list[str]:
    try:
        proc = subprocess.run(
            ["modprobe", "--set-version", release, "-R", alias], capture_output=True, text=True
        )
    except OSError:
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def watchdog_params(drivers: Iterable[str]) -> list[str]:
    """``<driver>.pretimeout=0`` for each watchdog driver: a pretimeout would panic the
    capture kernel instead of letting the watchdog reset the machine; hpwdt's kdumptimeout
    must be 0 in the capture kernel too (kdump-lib.sh prepare_cmdline)."""
    params = []
    for driver in drivers:
        params.append(f"{driver}.pretimeout=0")
        if driver == "hpwdt":
            params.append("hpwdt.kdumptimeout=0")
    return params


def capture_cmdline(
    base: str,
    remove: str,
    append: str,
    extra: Iterable[str] = (),
    apicid: int | None = None,
) -> str:
    """Assemble the capture kernel's command line.

    ``base`` is KDUMP_COMMANDLINE or /proc/cmdline, ``remove``/``append`` the
    KDUMP_COMMANDLINE_REMOVE/APPEND values (split by :func:`split_words`: only the names
    in ``remove`` count), ``extra`` further parameters (``kdump_test_id=...``), ``apicid``
    cpu0's APIC id on x86.
    """
    params = remove_params(split_words(base), ALWAYS_REMOVE + tuple(split_words(remove)))
    appended = split_words(append) + list(extra)
    if apicid is not None:
        appended.append(f"disable_cpu_apicid={apicid}")
    # A parameter the append list sets replaces the one inherited from the base.
    params = remove_params(params, [param_key(p) for p in appended if "=" in p])
    return " ".join(params + [p for p in appended if p not in params])
