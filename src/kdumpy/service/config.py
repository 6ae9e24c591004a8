"""``/etc/kdump.conf``: the parsed configuration shared by the service and the capture kernel.

The grammar and meanings follow RHEL kdump-utils (kdump.conf(5), ``parse_config`` in
kdumpctl): one ``<directive> <value...>`` per line, ``#`` starts a comment, a value
wrapped in double quotes loses them.  Unknown, deprecated, duplicated and conflicting
directives are errors naming ``file:line``.

This module must stay importable inside the capture initramfs: standard library and
:mod:`kdumpy.errors` only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kdumpy.errors import KdumpyError
from kdumpy.service.dracut_args import (
    DracutArgs,
    DracutArgsError,
    FenceArgs,
    mount_arg,
    parse_dracut_args,
    parse_fence_args,
)

_T = TypeVar("_T")
DEFAULT_CONFIG_PATH = Path("/etc/kdump.conf")
DEFAULT_PATH = "/var/crash"
DEFAULT_SSHKEY = "/root/.ssh/kdump_id_rsa"
# kdumpy's own filter, with makedumpfile's defaults (lzo, dump level 31).
DEFAULT_CORE_COLLECTOR = ("kdumpy", "collect", "-l", "--message-level", "7", "-d", "31")
# Where the capture initramfs mounts a filesystem or NFS target before the save runs.
CAPTURE_MOUNTPOINT = "/kdumproot"

FS_TYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs", "minix", "virtiofs")
TARGET_KINDS = FS_TYPES + ("raw", "nfs", "ssh")
FAILURE_ACTIONS = ("reboot", "halt", "poweroff", "shell", "dump_to_rootfs")
FINAL_ACTIONS = ("reboot", "halt", "poweroff")
# kdumpctl refuses these outright, pointing at the man page.
DEPRECATED = ("net", "options", "link_delay", "disk_timeout", "debug_mem_level", "blacklist")
OTHER_DIRECTIVES = (
    "path",
    "core_collector",
    "sshkey",
    "kdump_pre",
    "kdump_post",
    "kdump_emergency",
    "extra_bins",
    "extra_modules",
    "failure_action",
    "default",
    "final_action",
    "force_rebuild",
    "force_no_rebuild",
    "auto_reset_crashkernel",
    "dracut_args",
    "fence_kdump_args",
    "fence_kdump_nodes",
)
# Collectors that understand makedumpfile's options (-F in particular).
MAKEDUMPFILE_LIKE = ("makedumpfile", "kdumpy")


class ConfigError(KdumpyError):
    """kdump.conf (or the sysconfig file) is malformed; the message names file:line."""


@dataclass(frozen=True)
class Target:
    """Where the dump goes.

    ``kind`` is a filesystem type (``ext4``, ``xfs``...), ``raw``, ``nfs`` or ``ssh``.
    ``spec`` is the value as written: a device (``/dev/vdb1``, ``UUID=...``, ``LABEL=...``)
    for filesystems and raw, ``host:/export`` for NFS, ``user@host`` for ssh.
    ``mount_options`` only comes from a ``dracut_args --mount``.
    """

    kind: str
    spec: str
    mount_options: str = "defaults"

    @property
    def is_fs(self) -> bool:
        return self.kind in FS_TYPES

    @property
    def is_remote(self) -> bool:
        """ssh and NFS need the network in the capture kernel."""
        return self.kind in ("ssh", "nfs")

    @property
    def needs_flat(self) -> bool:
        """ssh and raw targets receive a stream: makedumpfile's flattened format (-F)."""
        return self.kind in ("ssh", "raw")

    @property
    def ssh_user(self) -> str:
        return self.spec.rpartition("@")[0]

    @property
    def ssh_host(self) -> str:
        return self.spec.rpartition("@")[2]

    @property
    def nfs_host(self) -> str:
        host = self.spec.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def nfs_export(self) -> str:
        return self.spec.rpartition(":")[2]


@dataclass(frozen=True)
class KdumpConfig:
    """The parsed kdump.conf.  Defaults are kdump-utils' defaults.

    ``target`` is None when no target directive is given: the dump then goes to
    ``path`` (absolute) on whatever filesystem holds it in the first kernel.
    """

    source: str = str(DEFAULT_CONFIG_PATH)
    target: Target | None = None
    path: str = DEFAULT_PATH
    core_collector: tuple[str, ...] = DEFAULT_CORE_COLLECTOR
    sshkey: str = DEFAULT_SSHKEY
    kdump_pre: str | None = None
    kdump_post: str | None = None
    kdump_emergency: str | None = None
    extra_bins: tuple[str, ...] = ()
    extra_modules: tuple[str, ...] = ()
    failure_action: str = "reboot"
    final_action: str = "reboot"
    force_rebuild: bool = False
    force_no_rebuild: bool = False
    auto_reset_crashkernel: bool = True
    dracut_args: tuple[str, ...] = ()
    dracut: DracutArgs = DracutArgs()  # what dracut_args means to kdumpy's initramfs
    fence_kdump_args: tuple[str, ...] = ()
    fence_kdump_nodes: tuple[str, ...] = ()
    fence: FenceArgs = FenceArgs()  # fence_kdump_args parsed
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def collector_argv(self) -> list[str]:
        """The core collector's argv with ``-F`` added (ssh, raw) or stripped (fs, NFS).

        Only for makedumpfile and ``kdumpy collect``; other collectors (cp, cat, scp)
        are returned unchanged.  Source and destination are for the caller to append.
        """
        argv = list(self.core_collector)
        if Path(argv[0]).name not in MAKEDUMPFILE_LIKE:
            return argv
        argv = [a for a in argv if a != "-F"]
        if self.target is not None and self.target.needs_flat:
            argv.insert(2 if Path(argv[0]).name == "kdumpy" else 1, "-F")
        return argv

    @property
    def uses_makedumpfile(self) -> bool:
        return Path(self.core_collector[0]).name == "makedumpfile"


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> KdumpConfig:
    """Read and parse a kdump.conf file; a missing or unreadable file is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no kdump config file found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = str(DEFAULT_CONFIG_PATH)) -> KdumpConfig:
    """Parse kdump.conf text; ``source`` names the file in error messages."""
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, value = (re.split(r"\s+", line, maxsplit=1) + [""])[:2]
        value = _unquote(value.strip())
        _check_directive(name, value, where, lines, source)
        if name == "default":
            warnings.append(f"{where}: 'default' is deprecated, use 'failure_action'")
        values[name] = value
        lines[name] = number
    config = _build(values, lines, source, warnings)
    _check_conflicts(config, lines, source)
    return config


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _check_directive(name: str, value: str, where: str, seen: dict[str, int], source: str) -> None:
    """Reject deprecated, unknown, empty, duplicated directives and a second target."""
    if name in DEPRECATED:
        raise ConfigError(
            f"{where}: deprecated kdump config option: {name}; see kdump.conf(5) for alternatives"
        )
    if name not in TARGET_KINDS and name not in OTHER_DIRECTIVES:
        raise ConfigError(f"{where}: invalid kdump config option: {name}")
    if not value:
        raise ConfigError(f"{where}: {name} has no value")
    if name in seen:
        raise ConfigError(
            f"{where}: duplicated kdump config value of option {name} "
            f"(first at {source}:{seen[name]})"
        )
    if name in TARGET_KINDS:
        other = [n for n in seen if n in TARGET_KINDS]
        if other:
            raise ConfigError(
                f"{where}: more than one dump target specified "
                f"({other[0]} at {source}:{seen[other[0]]})"
            )
    if name in ("failure_action", "default") and ({"failure_action", "default"} & seen.keys()):
        raise ConfigError(f"{where}: both 'default' and 'failure_action' are set")


def _split(value: str, where: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _zero_one(value: str, where: str, name: str) -> bool:
    """force_rebuild / force_no_rebuild: kdumpctl takes 0 and 1 only ("value is invalid")."""
    if value not in ("0", "1"):
        raise ConfigError(f"{where}: {name} must be 0 or 1, not {value!r}")
    return value == "1"


def _auto_reset(value: str, where: str, warnings: list[str]) -> bool:
    """kdumpctl resets unless the value is exactly "no"; anything but yes/no is worth a
    warning, since "0" or "No" would surprise whoever wrote it."""
    if value not in ("yes", "no"):
        warnings.append(
            f"{where}: auto_reset_crashkernel {value}: only 'no' turns it off (as kdumpctl); "
            "taken as yes"
        )
    return value != "no"


def _build(
    values: dict[str, str], lines: dict[str, int], source: str, warnings: list[str]
) -> KdumpConfig:
    """Turn the raw directive values into a KdumpConfig, checking each value."""

    def at(name: str) -> str:
        return f"{source}:{lines[name]}"

    kw: dict[str, object] = {"source": source, "warnings": tuple(warnings)}
    for name, value in values.items():
        if name in TARGET_KINDS:
            kw["target"] = _target(name, value, at(name))
        elif name == "path":
            kw["path"] = value
        elif name == "core_collector":
            kw["core_collector"] = _split(value, at(name))
        elif name in ("sshkey", "kdump_pre", "kdump_post", "kdump_emergency"):
            kw[name] = value
        elif name in ("extra_bins", "extra_modules", "fence_kdump_nodes"):
            kw[name] = _split(value, at(name))
        elif name == "fence_kdump_args":
            kw[name] = _split(value, at(name))
            kw["fence"] = _checked(parse_fence_args, _split(value, at(name)), at(name))
        elif name in ("failure_action", "default"):
            kw["failure_action"] = _action(value, FAILURE_ACTIONS, at(name), name)
        elif name == "final_action":
            kw["final_action"] = _action(value, FINAL_ACTIONS, at(name), name)
        elif name in ("force_rebuild", "force_no_rebuild"):
            kw[name] = _zero_one(value, at(name), name)
        elif name == "auto_reset_crashkernel":
            kw[name] = _auto_reset(value, at(name), warnings)
        elif name == "dracut_args":
            kw["dracut_args"] = _split(value, at(name))
            dracut = _checked(parse_dracut_args, _split(value, at(name)), at(name))
            kw["dracut"] = dracut
            warnings += [f"{at(name)}: {w}" for w in dracut.warnings]
            if dracut.mount is not None:
                if any(n in TARGET_KINDS for n in values):
                    raise ConfigError(f"{at(name)}: dracut_args --mount conflicts with a target")
                m = dracut.mount
                kind = "nfs" if m.fstype.startswith("nfs") else m.fstype
                kw["target"] = Target(kind, m.device, m.options)
    kw["warnings"] = tuple(warnings)
    return KdumpConfig(**kw)  # type: ignore[arg-type]


def _checked(parse: Callable[[tuple[str, ...]], _T], words: tuple[str, ...], where: str) -> _T:
    try:
        return parse(words)
    except DracutArgsError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _action(value: str, allowed: tuple[str, ...], where: str, name: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: {name} must be one of {'|'.join(allowed)}, not {value!r}")
    return value


def _target(kind: str, value: str, where: str) -> Target:
    """Check one target directive's value (kdump.conf(5) forms)."""
    if kind == "ssh" and ("@" not in value or value.startswith("@") or value.endswith("@")):
        raise ConfigError(f"{where}: ssh target must be user@server, not {value!r}")
    if kind in ("ssh", "nfs") and value.startswith("-"):
        # ssh, ssh-keyscan and mount would read it as an option (e.g. -oProxyCommand=...).
        raise ConfigError(f"{where}: {kind} target must not start with '-': {value!r}")
    if kind == "nfs" and (":" not in value or not value.rpartition(":")[2].startswith("/")):
        raise ConfigError(f"{where}: nfs target must be host:/export, not {value!r}")
    if kind == "raw" and not value.startswith("/dev/"):
        raise ConfigError(f"{where}: raw target must be a block device (/dev/...), not {value!r}")
    if kind in FS_TYPES and not (
        value.startswith("/dev/")
        or value.split("=", 1)[0] in ("UUID", "LABEL", "PARTUUID")
        or kind == "virtiofs"
    ):
        raise ConfigError(f"{where}: {kind} target must be /dev/..., UUID= or LABEL=: {value!r}")
    if len(value.split()) != 1:
        raise ConfigError(f"{where}: {kind} target takes one value, not {value!r}")
    return Target(kind, value)


def _check_conflicts(config: KdumpConfig, lines: dict[str, int], source: str) -> None:
    if config.force_rebuild and config.force_no_rebuild:
        raise ConfigError(
            f"{source}:{lines['force_no_rebuild']}: force_rebuild and force_no_rebuild "
            "can't be enabled at the same time"
        )
    if config.target is None and not config.path.startswith("/"):
        raise ConfigError(f"{source}:{lines['path']}: path must be absolute without a target")


def render_config(config: KdumpConfig) -> str:
    """Write a config back as kdump.conf text (used for the copy in the capture initramfs).

    A target whose kind no directive names (vfat, f2fs, exfat... from ``dracut_args
    --mount`` or the filesystem holding ``path``), or that carries mount options, is written
    as ``dracut_args --mount``: the copy must parse back to the same target.
    """
    out: list[str] = ["# written by kdumpy from " + config.source]
    target = config.target
    if target is not None and (target.kind in TARGET_KINDS and target.mount_options == "defaults"):
        out.append(f"{target.kind} {target.spec}")
    elif target is not None:
        fstype = "nfs" if target.kind == "nfs" else target.kind
        out.append("dracut_args " + mount_arg(target.spec, fstype, target.mount_options))
    out.append(f"path {config.path}")
    out.append("core_collector " + shlex.join(config.core_collector))
    if target is not None and target.kind == "ssh":
        out.append(f"sshkey {config.sshkey}")
    for name in ("kdump_pre", "kdump_post", "kdump_emergency"):
        if getattr(config, name) is not None:
            out.append(f"{name} {getattr(config, name)}")
    for name in ("extra_bins", "extra_modules", "fence_kdump_args", "fence_kdump_nodes"):
        if getattr(config, name):
            out.append(f"{name} " + shlex.join(getattr(config, name)))
    out.append(f"failure_action {config.failure_action}")
    out.append(f"final_action {config.final_action}")
    return "\n".join(out) + "\n"
