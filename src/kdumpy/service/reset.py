"""``kdumpy reset-crashkernel`` and the automatic reset when a kernel is installed.

kdumpctl's reset_crashkernel, _reset-crashkernel-for-installed_kernel and
_reset-crashkernel-after-update: every boot entry concerned gets kdump-utils' default
``crashkernel=`` (crashkernel_default.py) for its kernel and dump mode (``fadump=on`` or
``nocma`` on ppc64le means fadump).  ``crashkernel=auto``, which only RHEL 8 kernels read,
is replaced like any other value.

Through grubby when it is installed (each entry on its own); otherwise GRUB's
/etc/default/grub, whose GRUB_CMDLINE_LINUX every kernel shares, then update-grub.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.arch.kdump_select import kdump_machine
from kdumpy.errors import KdumpyError
from kdumpy.service import bootloader
from kdumpy.service.config import KdumpConfig
from kdumpy.service.kernels import kver_from_path

Report = Callable[[str], None]
GRUB2_CFG = Path("/boot/grub2/grub.cfg")
GRUB_CFG = Path("/boot/grub/grub.cfg")  # Debian's
ZIPL_CONF = Path("/etc/zipl.conf")
MIN_MEMORY_GIB = {"kdump": 2, "fadump": 4}  # under this the default tables reserve nothing
OPT_OUT = (
    "Note if you don't want kdumpy to manage the crashkernel kernel parameter, please set "
    "auto_reset_crashkernel no in /etc/kdump.conf."
)


@dataclass
class Machine:
    """What a reset needs to know and touch (each part replaceable in tests)."""

    default_for: Callable[[str, str], str]  # (kernel release, dump mode) -> crashkernel value
    arch: str
    system_gib: int
    running_release: str
    report: Report
    grubby: str | None = field(default_factory=lambda: shutil.which("grubby"))
    grub_default: Path = bootloader.GRUB_DEFAULT
    machine_id: str = ""
    regenerate_grub: bool = True  # run update-grub after editing /etc/default/grub


def dump_mode_of(fadump: str) -> str:
    """kdumpctl's get_dump_mode_by_fadump_val."""
    if fadump in ("", "off"):
        return "kdump"
    if fadump in ("on", "nocma"):
        return "fadump"
    raise KdumpyError(f"invalid fadump={fadump}")


def should_auto_reset(config: KdumpConfig, unit: str = "kdumpy.service") -> bool:
    """auto_reset_crashkernel is not "no" and the service is enabled (kdumpctl's
    _should_reset_crashkernel)."""
    if not config.auto_reset_crashkernel or shutil.which("systemctl") is None:
        return False
    proc = subprocess.run(["systemctl", "is-enabled", unit], capture_output=True, check=False)
    return proc.returncode == 0


def reset_crashkernel(m: Machine, kernel: str | None = None, fadump: str | None = None) -> int:
    """kdumpctl reset-crashkernel [--kernel=path|ALL|DEFAULT] [--fadump=on|off|nocma]."""
    if fadump is not None:
        if not kdump_machine(m.arch).fadump:
            raise KdumpyError("Option --fadump only valid on PPC")
        dump_mode_of(fadump)
    if m.grubby is None:
        return _reset_grub_default(m, kernel, fadump)
    selector = _grubby_selector(m, kernel)
    for entry in bootloader.grubby_entries(selector, m.grubby):
        _reset_entry(m, entry, fadump)
    return 0


def _grubby_selector(m: Machine, kernel: str | None) -> str:
    assert m.grubby is not None
    if kernel is None or not bootloader.grubby_entries(kernel, m.grubby):
        release = kernel or m.running_release
        path = find_kernel_path(release, m.grubby)
        if path is None:
            if kernel is not None:
                raise KdumpyError(
                    f"Invalid --kernel={kernel}, please specify a valid kernel path, ALL or DEFAULT"
                )
            raise KdumpyError(f"no kernel for version {release} found")
        return path
    return kernel


def find_kernel_path(release: str, grubby: str) -> str | None:
    """The boot entry kernel path for a release (kdumpctl's _find_kernel_path_by_release:
    the path ends with the release, or with the release and one more path component)."""
    for entry in bootloader.grubby_entries("ALL", grubby):
        head, _, tail = entry.kernel.rpartition("/")
        if entry.kernel.endswith(release) or (
            head.endswith(release) and re.fullmatch(r"\w+", tail)
        ):
            return entry.kernel
    return None


def _reset_entry(m: Machine, entry: bootloader.BootEntry, fadump: str | None) -> None:
    assert m.grubby is not None
    release = kver_from_path(entry.kernel, m.machine_id) or m.running_release
    changed = ""
    if fadump is not None:
        mode = dump_mode_of(fadump)
        new_fadump = "" if fadump == "off" else fadump
        if bootloader.grubby_set_param(
            entry.index, "fadump", entry.param("fadump"), new_fadump, m.grubby
        ):
            changed = f"Updated fadump={new_fadump}" if new_fadump else "Removed fadump"
    else:
        fadump_here = kdump_machine(m.arch).fadump
        mode = dump_mode_of(entry.param("fadump")) if fadump_here else "kdump"
    new = m.default_for(release, mode)
    if bootloader.grubby_set_param(
        entry.index, "crashkernel", entry.param("crashkernel"), new, m.grubby
    ):
        changed = (
            f"{changed} and updated crashkernel={new}"
            if changed
            else (f"Updated crashkernel={new}")
        )
    where = f"kernel={entry.kernel}, grub entry index={entry.index}"
    if not changed:
        m.report(f"No need to update crashkernel value for {where}")
        return
    m.report(f"{changed} for {where}.")
    _reboot_note(m, mode)


def _reboot_note(m: Machine, mode: str) -> None:
    """kdumpctl's check_mem_requirement, then the reboot reminder."""
    if m.system_gib < MIN_MEMORY_GIB[mode]:
        m.report(
            "WARNING: No memory will be reserved for crash kernel for this system because the "
            f"system memory is smaller than the requirement. {mode} requires more than "
            f"{MIN_MEMORY_GIB[mode]}GB memory."
        )
        return
    m.report("Please reboot the system for the change to take effect.")


def _reset_grub_default(m: Machine, kernel: str | None, fadump: str | None) -> int:
    """No grubby: GRUB_CMDLINE_LINUX in /etc/default/grub, for every kernel at once."""
    if not m.grub_default.exists():
        raise KdumpyError(
            f"{m.grub_default}: not found and grubby is not installed; set crashkernel= on "
            "the kernel command line by hand"
        )
    if kernel not in (None, "ALL"):
        m.report(
            f"{m.grub_default} holds one command line for every kernel: "
            f"--kernel={kernel} updates them all"
        )
    text = original = m.grub_default.read_text()
    mode = "kdump"
    if fadump is not None:
        mode = dump_mode_of(fadump)
        value = "" if fadump == "off" else fadump
        text = bootloader.edit_grub_param(text, "fadump", f"fadump={value}" if value else None)
    elif kdump_machine(m.arch).fadump:
        mode = dump_mode_of(bootloader.grub_default_param(text, "fadump"))
    new = m.default_for(kernel if kernel not in (None, "ALL") else m.running_release, mode)
    if text == original and bootloader.grub_default_param(text, "crashkernel") == new:
        m.report(f"No need to update crashkernel value in {m.grub_default}")
        return 0
    text = bootloader.edit_grub_param(text, "crashkernel", f"crashkernel={new}")
    change = bootloader.grub_default_change(m.grub_default, text)
    if change.description == "(no change)":
        m.report(f"No need to update crashkernel value in {m.grub_default}")
        return 0
    if not m.regenerate_grub:
        change = bootloader.Change(change.method, change.description, (), change.path,
                                   change.new_text)  # fmt: skip
    for note in bootloader.apply(change)[:-1]:
        m.report(note)
    m.report(f"Updated crashkernel={new} in {m.grub_default}.")
    _shadowed_note(m)
    _reboot_note(m, mode)
    return 0


def _shadowed_note(m: Machine) -> None:
    """/etc/default/grub.d/*.cfg are read after /etc/default/grub (Debian's kdump-tools puts
    its crashkernel= there): a second value there would win on the command line."""
    drop_in = m.grub_default.with_name("grub.d")
    if not drop_in.is_dir():
        return
    for cfg in sorted(drop_in.glob("*.cfg")):
        try:
            text = cfg.read_text()
        except OSError:
            continue
        if "crashkernel=" in text:
            m.report(f"WARNING: {cfg} also sets crashkernel=; the last one given wins")


def bootloader_installed(arch: str) -> bool:
    """kdumpctl's _is_bootloader_installed (GRUB2's or zipl's config), or Debian's GRUB."""
    if kdump_machine(arch).boot_config == "zipl":
        return ZIPL_CONF.exists()
    return GRUB2_CFG.exists() or GRUB_CFG.exists()


def reset_for_installed_kernel(m: Machine, release: str) -> int:
    """A kernel was just installed: give its entries the default crashkernel= for it.

    kdumpctl's reset_crashkernel_for_installed_kernel (92-crashkernel.install).  On Debian
    the hook runs from /etc/kernel/postinst.d before zz-update-grub, which regenerates
    grub.cfg: /etc/default/grub is only edited.
    """
    if not bootloader_installed(m.arch):
        return 0
    if m.grubby is None:
        m.regenerate_grub = False
        return _reset_grub_default(m, release, None)
    path = find_kernel_path(release, m.grubby)
    if path is None:
        raise KdumpyError(f"no boot entry for the installed kernel {release}")
    for entry in bootloader.grubby_entries(path, m.grubby):
        _update_to_default(m, entry, release)
    return 0


def reset_after_update(m: Machine) -> int:
    """kdumpy's default changed (a new version): every entry gets it (kdumpctl's
    reset_crashkernel_after_update)."""
    if not bootloader_installed(m.arch):
        return 0
    if m.grubby is None:
        return _reset_grub_default(m, None, None)
    for entry in bootloader.grubby_entries("ALL", m.grubby):
        _update_to_default(m, entry, kver_from_path(entry.kernel, m.machine_id) or "")
    return 0


def _update_to_default(m: Machine, entry: bootloader.BootEntry, release: str) -> None:
    assert m.grubby is not None
    mode = dump_mode_of(entry.param("fadump"))
    new = m.default_for(release or m.running_release, mode)
    if bootloader.grubby_set_param(
        entry.index, "crashkernel", entry.param("crashkernel"), new, m.grubby
    ):
        m.report(
            f"For kernel={entry.kernel}, crashkernel={new} now. Please reboot the system for "
            f"the change to take effect. {OPT_OUT}"
        )


def machine_id() -> str:
    try:
        return Path("/etc/machine-id").read_text().strip()
    except OSError:
        return ""


def running_release() -> str:
    return os.uname().release
