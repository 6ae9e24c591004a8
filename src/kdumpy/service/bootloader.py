"""``kdumpy reserve``: put ``crashkernel=`` on the kernel command line of the boot loader.

Through grubby when it is installed (RHEL/Fedora: every boot entry), otherwise by
editing GRUB_CMDLINE_LINUX in /etc/default/grub and running update-grub (Debian).
The change is computed first so that the CLI can show it and ask before applying.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError

GRUB_DEFAULT = Path("/etc/default/grub")
_LINE = re.compile(r'^(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(["\']?)(.*)\2\s*$')


@dataclass(frozen=True)
class Change:
    """A pending boot loader change: what it does, shown before it is applied."""

    method: str  # "grubby" or "grub-default"
    description: str  # a diff or the grubby commands
    commands: tuple[tuple[str, ...], ...]  # run after writing
    path: Path | None = None
    new_text: str = ""


def edit_grub_param(text: str, name: str, param: str | None) -> str:
    """/etc/default/grub with every *name* / *name*=... parameter removed from both command
    lines and, when *param* is given, *param* added to GRUB_CMDLINE_LINUX (the line normal
    and recovery entries share)."""
    lines = text.splitlines()
    found = False
    for i, line in enumerate(lines):
        match = _LINE.match(line)
        if not match:
            continue
        var, quote, current = match.groups()
        params = " ".join(p for p in current.split() if p.partition("=")[0] != name)
        if param is not None and var == "GRUB_CMDLINE_LINUX":
            params = f"{params} {param}".strip()
            found = True
        lines[i] = f"{var}='{params}'" if quote == "'" else f'{var}="{params}"'
    if param is not None and not found:
        lines.append(f'GRUB_CMDLINE_LINUX="{param}"')
    return "\n".join(lines) + "\n"


def edit_grub_default(text: str, value: str) -> str:
    """/etc/default/grub with every crashkernel= replaced by ``crashkernel=value``."""
    return edit_grub_param(text, "crashkernel", f"crashkernel={value}")


def plan(value: str, grub_default: Path = GRUB_DEFAULT) -> Change:
    """Work out how to set ``crashkernel=value`` on this machine, without changing anything."""
    grubby = shutil.which("grubby")
    if grubby:
        commands = (
            (grubby, "--update-kernel=ALL", "--remove-args=crashkernel"),
            (grubby, "--update-kernel=ALL", f"--args=crashkernel={value}"),
        )
        desc = "\n".join(" ".join(c) for c in commands)
        return Change("grubby", desc, commands)
    if not grub_default.exists():
        raise KdumpyError(
            f"{grub_default}: not found and grubby is not installed; add crashkernel={value} "
            "to the kernel command line by hand"
        )
    return grub_default_change(grub_default, edit_grub_default(grub_default.read_text(), value))


def grub_default_change(grub_default: Path, new: str) -> Change:
    """Replace *grub_default* by *new*, shown as a diff, then regenerate grub.cfg."""
    old = grub_default.read_text()
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            str(grub_default),
            f"{grub_default} (new)",
        )
    )
    commands = (_grub_update_command(),) if diff else ()
    return Change("grub-default", diff or "(no change)", commands, grub_default, new)


def _grub_update_command() -> tuple[str, ...]:
    if shutil.which("update-grub"):
        return ("update-grub",)
    for tool in ("grub2-mkconfig", "grub-mkconfig"):
        found = shutil.which(tool)
        if found:
            cfg = "/boot/grub2/grub.cfg" if "grub2" in tool else "/boot/grub/grub.cfg"
            return (found, "-o", cfg)
    return ()


def apply(change: Change) -> list[str]:
    """Write the change and run the boot loader tools; return notes for the user."""
    notes: list[str] = []
    if change.path is not None:
        tmp = change.path.with_name(f".{change.path.name}.kdumpy-tmp")
        tmp.write_text(change.new_text)
        os.chmod(tmp, change.path.stat().st_mode & 0o7777)
        tmp.replace(change.path)
        notes.append(f"updated {change.path}")
    for cmd in change.commands:
        if not cmd:
            notes.append("no update-grub or grub-mkconfig found: regenerate grub.cfg by hand")
            continue
        proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KdumpyError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        notes.append(f"ran {' '.join(cmd)}")
    notes.append("Please reboot the system for the change to take effect")
    return notes


# grubby's view of the boot entries (RHEL/Fedora: BLS entries, GRUB or zipl), as kdumpctl
# reads it (_get_all_kernels_from_grubby, get_grub_kernel_boot_parameter).


@dataclass(frozen=True)
class BootEntry:
    """One boot loader entry: its grubby index, kernel path and command line."""

    index: str
    kernel: str
    args: str

    def param(self, name: str) -> str:
        """The value of the last ``name=`` parameter ("" when absent)."""
        value = ""
        for word in self.args.split():
            key, eq, rest = word.partition("=")
            if key == name and eq:
                value = rest
        return value


def parse_grubby_info(text: str) -> list[BootEntry]:
    """Entries from ``grubby --info=...`` output (index=, kernel="...", args="...")."""
    entries: list[BootEntry] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if fields.get("kernel"):
            index, args = fields.get("index", ""), fields.get("args", "")
            entries.append(BootEntry(index, fields["kernel"], args))

    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if not eq:
            continue
        if key == "index":
            flush()
            fields = {}
        fields[key] = value.strip().strip('"')
    flush()
    return entries


def grubby_entries(selector: str, grubby: str = "grubby") -> list[BootEntry]:
    """``grubby --info=<selector>`` (ALL, DEFAULT, an index or a kernel path); [] when grubby
    knows no such kernel."""
    proc = subprocess.run(
        [grubby, f"--info={selector}"], capture_output=True, text=True, check=False
    )
    return parse_grubby_info(proc.stdout) if proc.returncode == 0 else []


def grubby_set_param(entry: str, name: str, old: str, new: str, grubby: str = "grubby") -> bool:
    """Set (or with ``new`` empty remove) ``name=`` on one entry, as kdumpctl's
    _update_kernel_cmdline; False when it already has that value.  zipl runs after a change
    when /etc/zipl.conf exists (s390x)."""
    if new and old == new:
        return False
    if not new and not old:
        return False
    flag = f"--args={name}={new}" if new else f"--remove-args={name}"
    cmd = [grubby, f"--update-kernel={entry}", flag]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KdumpyError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    if Path("/etc/zipl.conf").exists() and shutil.which("zipl"):
        subprocess.run(["zipl"], capture_output=True, check=False)
    return True


def grub_default_param(text: str, name: str) -> str:
    """The value of ``name=`` on GRUB_CMDLINE_LINUX in /etc/default/grub text ("" if absent)."""
    value = ""
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match.group(1) == "GRUB_CMDLINE_LINUX":
            for word in match.group(3).split():
                key, eq, rest = word.partition("=")
                if key == name and eq:
                    value = rest
    return value
