"""kdump.conf's ``dracut_args`` and ``fence_kdump_args``: what each option means to kdumpy.

kdump-utils hands ``dracut_args`` to dracut, which builds its capture initramfs; kdumpy
builds its own, so each dracut option is honoured where it maps onto that initramfs,
accepted with a warning where it has nothing to act on, and refused with a one-line reason
otherwise (never silently ignored):

* ``--mount "<dev> <mountpoint> <fstype> [<options>]"``: the dump target (checked like a
  target directive: a device, UUID=/LABEL=/PARTUUID=/PARTLABEL= or host:/export that
  does not start with '-', a plain filesystem type, plain mount options);
* ``--add-drivers``, ``--force-drivers``, ``-d/--drivers``, ``--filesystems``: kernel modules
  added, like extra_modules; ``--omit-drivers``: modules left out;
* ``-I/--install``: files copied at their host paths, like extra_bins;
* ``--gzip``, ``--zstd``, ``--no-compress``, ``--compress gzip|zstd|cat``: the archive's
  compression (the others are refused: the kernel must unpack what kdumpy writes);
* warned about, no effect: ``-o/--omit`` (kdumpy has no dracut modules to omit), quiet,
  verbose, hostonly and strip switches, ``--squash-compressor``.

``fence_kdump_args`` are fence_kdump_send's options (fence-agents' fence_kdump_send.c):
``-p/--ipport`` (default 7410), ``-f/--family`` auto|ipv4|ipv6, ``-c/--count`` (0: until the
machine reboots), ``-i/--interval`` seconds (default 10), ``-v/--verbose``.

Standard library only: the capture kernel parses kdump.conf with this module too.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

# option -> what it does; "list": takes a space-separated list value, "value": one value,
# "flag": no value.
_MODULE_OPTS = {"--add-drivers", "--force-drivers", "-d", "--drivers", "--filesystems"}
_COMPRESSION_FLAGS = {"--gzip": "gzip", "--zstd": "zstd", "--no-compress": "none"}
_COMPRESSION_NAMES = {"gzip": "gzip", "pigz": "gzip", "zstd": "zstd", "cat": "none"}
_NO_EFFECT_FLAGS = {
    "-q", "--quiet", "-v", "--verbose", "--debug", "-f", "--force", "-H", "--hostonly",
    "--hostonly-cmdline", "--no-hostonly-cmdline", "--hostonly-i18n", "--no-hostonly-i18n",
    "--aggressive-strip", "--strip", "--nostrip", "--early-microcode", "--no-early-microcode",
    "--no-hostonly-default-device", "--lvmconf", "--nolvmconf", "--mdadmconf", "--nomdadmconf",
}  # fmt: skip
_NO_EFFECT_VALUES = {"-o", "--omit", "--squash-compressor", "--hostonly-nics",
                     "--hostonly-mode", "--persistent-policy"}  # fmt: skip
_REFUSED = {
    "-a": "kdumpy's initramfs has no dracut modules: extra_modules adds kernel modules, "
    "extra_bins programs",
    "--add": "kdumpy's initramfs has no dracut modules: extra_modules adds kernel modules, "
    "extra_bins programs",
    "-m": "kdumpy's initramfs has no dracut modules",
    "--modules": "kdumpy's initramfs has no dracut modules",
    "--kernel-cmdline": "the capture kernel's command line comes from KDUMP_COMMANDLINE_APPEND",
    "-N": "kdumpy builds for this machine only",
    "--no-hostonly": "kdumpy builds for this machine only",
    "--include": "use extra_bins or --install for files at their host paths",
    "-i": "use extra_bins or --install for files at their host paths",
}
_VALUE_OPTS = (
    _MODULE_OPTS
    | _NO_EFFECT_VALUES
    | {"--omit-drivers", "-I", "--install", "--compress", "--mount"}
    | {"-a", "--add", "-m", "--modules", "--kernel-cmdline", "-i", "--include"}
)
_SAFE_WORD = re.compile(r"[A-Za-z0-9_/\[][A-Za-z0-9_.:@+=/,\[\]%~-]*")
_FSTYPE = re.compile(r"[a-z0-9][a-z0-9_.]*")
_DEVICE_KEYS = ("UUID", "LABEL", "PARTUUID", "PARTLABEL")


class DracutArgsError(ValueError):
    """One dracut_args / fence_kdump_args problem (the caller adds file:line)."""


@dataclass(frozen=True)
class Mount:
    """``--mount``: what to mount as the dump target."""

    device: str
    fstype: str
    options: str


@dataclass(frozen=True)
class DracutArgs:
    mount: Mount | None = None
    add_drivers: tuple[str, ...] = ()
    omit_drivers: tuple[str, ...] = ()
    install: tuple[str, ...] = ()
    compression: str | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)


def parse_dracut_args(words: tuple[str, ...]) -> DracutArgs:
    """``words``: the value split as the shell would (each --mount spec is one word)."""
    add: list[str] = []
    omit: list[str] = []
    install: list[str] = []
    warnings: list[str] = []
    mount: Mount | None = None
    compression: str | None = None
    for opt, value in _options(words):
        if opt in _REFUSED:
            raise DracutArgsError(f"dracut_args {opt}: not supported: {_REFUSED[opt]}")
        if opt == "--mount":
            if mount is not None:
                raise DracutArgsError('multiple mount targets specified in one "dracut_args"')
            mount = parse_mount(value)
        elif opt in _MODULE_OPTS:
            add += value.split()
        elif opt == "--omit-drivers":
            omit += value.split()
        elif opt in ("-I", "--install"):
            install += value.split()
        elif opt in _COMPRESSION_FLAGS or opt == "--compress":
            name = _COMPRESSION_FLAGS.get(opt) or _COMPRESSION_NAMES.get(value)
            if name is None:
                raise DracutArgsError(
                    f"dracut_args --compress {value}: kdumpy writes gzip, zstd or no compression"
                )
            compression = name
        elif opt in _NO_EFFECT_FLAGS or opt in _NO_EFFECT_VALUES:
            shown = f"{opt} {value}" if opt in _NO_EFFECT_VALUES else opt
            warnings.append(f"dracut_args {shown}: no effect on kdumpy's initramfs")
        elif opt in ("--xz", "--lz4", "--lzo", "--lzma", "--bzip2"):
            raise DracutArgsError(f"dracut_args {opt}: kdumpy writes gzip, zstd or no compression")
        else:
            raise DracutArgsError(f"dracut_args {opt}: kdumpy has no equivalent for it")
    for name in add + omit:
        _check_word(name, "module name")
    for path in install:
        if not path.startswith("/"):
            raise DracutArgsError(f"dracut_args --install {path}: an absolute path is needed")
    return DracutArgs(mount, tuple(add), tuple(omit), tuple(install), compression, tuple(warnings))


def _options(words: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(option, value) pairs; ``--opt=value`` and ``--opt value`` alike.  A generator: an
    unknown option is refused before its value would be misread as the next option."""
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-"):
            raise DracutArgsError(f"dracut_args: {word!r} is not an option")
        opt, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if opt in _VALUE_OPTS and not eq:
            if i + 1 >= len(words):
                raise DracutArgsError(f"dracut_args {opt} needs a value")
            i += 1
            value = words[i]
        yield opt, value
        i += 1


def parse_mount(spec: str) -> Mount:
    """``"<dev> <mountpoint> <fstype> [<options>]"``, every part checked: none may reach
    ``mount`` or ``ssh`` as an option."""
    parts = spec.split()
    if not 3 <= len(parts) <= 4:
        raise DracutArgsError('--mount needs "<dev> <mountpoint> <fstype> [<options>]"')
    device, mountpoint, fstype = parts[:3]
    options = parts[3] if len(parts) == 4 else "defaults"
    if not _FSTYPE.fullmatch(fstype):
        raise DracutArgsError(f"--mount: {fstype!r} is not a filesystem type")
    if not mountpoint.startswith("/"):
        raise DracutArgsError(f"--mount: mount point {mountpoint!r} is not absolute")
    _check_word(device, "device")
    nfs = fstype in ("nfs", "nfs4")
    if nfs and (":" not in device or not device.rpartition(":")[2].startswith("/")):
        raise DracutArgsError(f"--mount: nfs device must be host:/export, not {device!r}")
    if (
        not nfs
        and fstype != "virtiofs"
        and not (device.startswith("/dev/") or device.partition("=")[0] in _DEVICE_KEYS)
    ):
        raise DracutArgsError(
            f"--mount: device must be /dev/..., UUID=, LABEL=, PARTUUID= or PARTLABEL=: {device!r}"
        )
    for option in options.split(","):
        _check_word(option, "mount option")
    return Mount(device, fstype, options)


def _check_word(word: str, what: str) -> None:
    if not _SAFE_WORD.fullmatch(word):
        raise DracutArgsError(f"{what} {word!r} must not start with '-' or hold odd characters")


@dataclass(frozen=True)
class FenceArgs:
    """fence_kdump_send's options."""

    port: int = 7410
    family: str = "auto"  # auto, ipv4, ipv6
    count: int = 0  # 0: forever (until the capture kernel reboots)
    interval: int = 10
    verbose: bool = False


_FENCE_LONG = {"--ipport": "-p", "--family": "-f", "--count": "-c", "--interval": "-i",
               "--verbose": "-v"}  # fmt: skip


def parse_fence_args(words: tuple[str, ...]) -> FenceArgs:
    """fence_kdump_args, with fence_kdump_send's limits (port 1-65535, count >= 0,
    interval >= 1, family auto/ipv4/ipv6)."""
    values: dict[str, str] = {}
    i = 0
    while i < len(words):
        opt, eq, value = (
            words[i].partition("=")
            if words[i].startswith("--")
            else (words[i][:2], "", words[i][2:])
        )
        opt = _FENCE_LONG.get(opt, opt)
        if opt == "-v":
            values["-v"] = "1"
        elif opt in ("-p", "-f", "-c", "-i"):
            if not value:
                i += 1
                if i >= len(words):
                    raise DracutArgsError(f"fence_kdump_args {opt} needs a value")
                value = words[i]
            values[opt] = value
        else:
            raise DracutArgsError(
                f"fence_kdump_args {words[i]}: fence_kdump_send takes -p, -f, -c, -i, -v"
            )
        i += 1
    args = FenceArgs(
        port=_int(values.get("-p", "7410"), "-p", 1, 65535),
        family=values.get("-f", "auto").lower(),
        count=_int(values.get("-c", "0"), "-c", 0, 1 << 31),
        interval=_int(values.get("-i", "10"), "-i", 1, 1 << 31),
        verbose="-v" in values,
    )
    if args.family not in ("auto", "ipv4", "ipv6"):
        raise DracutArgsError(f"fence_kdump_args -f {args.family}: auto, ipv4 or ipv6")
    return args


def _int(text: str, opt: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise DracutArgsError(f"fence_kdump_args {opt} {text}: a number {low}-{high} is needed")
    return int(text)


def mount_arg(device: str, fstype: str, options: str) -> str:
    """The dracut_args value that names a target by --mount (for the capture-side copy)."""
    from_parts = f"{device} /kdumproot {fstype} {options}"
    return "--mount " + shlex.quote(from_parts)
