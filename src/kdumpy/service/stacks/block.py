"""The block layers under a dump target: md RAID, LUKS and LVM (linear and thin).

Read host-only from the running system as ``lsblk --inverse --json`` shows them (the
target's device first, each entry's ``children`` the devices it sits on), like dracut's
``--hostonly`` finds its way down from the root device.  A stack is brought up bottom-up
in the capture kernel, so :class:`Stack` keeps its layers in that order.

LUKS is done kdump-utils' way without the kernel key hand-over (``crash_dm_crypt_keys``,
Linux 6.16+ x86_64): the volume is opened with a key file that ``/etc/crypttab`` names for
it.  No key file means no dump (a capture kernel cannot ask for a passphrase), so
:func:`luks_keys` refuses such a target with the reason, for ``kdumpy config check``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service.stacks.iscsi import IscsiSession, sessions
from kdumpy.service.stacks.nvme import NvmeTcpController, controllers

LSBLK_COLUMNS = "NAME,KNAME,TYPE,FSTYPE,UUID"
LEAF_TYPES = {"disk", "part", "loop"}
# md personality (lsblk's TYPE is /sys/block/mdN/md/level) -> the module that runs it.
MD_MODULES = {
    "raid0": "raid0",
    "raid1": "raid1",
    "raid4": "raid456",
    "raid5": "raid456",
    "raid6": "raid456",
    "raid10": "raid10",
    "linear": "linear",
}
# A raid4/5/6 array assembled in the capture kernel allocates its stripe cache at once:
# raid5.h's NR_STRIPES stripes of one page per member (raid5 logs "allocated NkB").
NR_STRIPES = 256
PARITY_LEVELS = ("raid4", "raid5", "raid6")
# Paths searched for the tools beyond PATH (a service's PATH may lack the sbin dirs).
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


@dataclass(frozen=True)
class Layer:
    """One md array, LUKS volume or LVM logical volume under the target."""

    kind: str  # "md" | "luks" | "lvm"
    device: str  # the node it provides in the first kernel: /dev/md127, /dev/mapper/x
    uuid: str = ""  # md: the array UUID; luks: the LUKS header UUID
    level: str = ""  # md: raid1, raid5, ...
    vg: str = ""  # lvm
    lv: str = ""
    thin: bool = False  # lvm: a thin volume (its pool comes up with it)
    backing: str = ""  # luks: the device holding the header (first kernel's name)
    dm_name: str = ""  # luks and lvm: the device-mapper name

    def modules(self) -> list[str]:
        """Kernel modules this layer needs (before the cipher's, for LUKS)."""
        if self.kind == "md":
            return ["md_mod", MD_MODULES[self.level]]
        if self.kind == "lvm":
            return ["dm_mod", "dm_thin_pool"] if self.thin else ["dm_mod"]
        return ["dm_mod", "dm_crypt"]

    def describe(self) -> str:
        if self.kind == "md":
            return f"md {self.level} {self.device} (UUID {self.uuid})"
        if self.kind == "lvm":
            return f"LVM {'thin ' if self.thin else ''}volume {self.vg}/{self.lv}"
        return f"LUKS volume {self.dm_name} (UUID {self.uuid})"


@dataclass(frozen=True)
class Stack:
    """The layers under one block device, bottom-up, and the disks at the bottom."""

    device: str
    layers: tuple[Layer, ...] = ()
    disks: tuple[str, ...] = ()
    network: dict | None = None  # the plan of service/stacks/net.py, for remote targets
    iscsi: tuple[IscsiSession, ...] = ()  # the disks' iSCSI sessions (service/stacks/iscsi.py)
    nvme: tuple[NvmeTcpController, ...] = ()  # the disks' NVMe/TCP controllers (stacks/nvme.py)

    def kinds(self) -> set[str]:
        fabrics = ({"iscsi"} if self.iscsi else set()) | ({"nvme-tcp"} if self.nvme else set())
        return {layer.kind for layer in self.layers} | fabrics

    def portal(self) -> str | None:
        """The address of the first iSCSI portal or NVMe/TCP controller under the
        target: the capture kernel needs the network to it."""
        if self.iscsi:
            return self.iscsi[0].address
        return self.nvme[0].traddr.partition("%")[0] if self.nvme else None


def split_dm_name(name: str) -> tuple[str, str]:
    """LVM's device-mapper name ``vg-lv`` -> (vg, lv); a ``-`` in a name is doubled."""
    i = 0
    while i < len(name):
        if name[i] == "-":
            if name[i + 1 : i + 2] == "-":
                i += 2
                continue
            return name[:i].replace("--", "-"), name[i + 1 :].replace("--", "-")
        i += 1
    raise KdumpyError(f"{name}: not an LVM device-mapper name (no vg-lv separator)")


def _dm_name(node: dict) -> str:
    return str(node["name"]).removeprefix("/dev/mapper/")


@dataclass
class _Walk:
    layers: dict[str, tuple[int, Layer]] = field(default_factory=dict)
    disks: list[str] = field(default_factory=list)


def parse_lsblk(data: dict, source: str = "lsblk") -> Stack:
    """A :class:`Stack` from ``lsblk -J -s -p -o NAME,KNAME,TYPE,FSTYPE,UUID DEVICE``."""
    try:
        top = data["blockdevices"][0]
    except (KeyError, IndexError, TypeError):
        raise KdumpyError(f"{source}: no block device in lsblk's answer") from None
    walk = _Walk()
    _visit(top, walk, above="", source=source)
    ordered = sorted(walk.layers.values(), key=lambda item: item[0])
    return Stack(str(top["name"]), tuple(layer for _, layer in ordered), tuple(walk.disks))


def _visit(node: dict, walk: _Walk, above: str, source: str) -> tuple[int, bool]:
    """Record *node*'s layer; return its height above the disks and whether an LVM
    thin pool lies under it within the same run of LVM devices."""
    kind = str(node.get("type") or "")
    name = str(node["name"])
    if kind in LEAF_TYPES:  # a partition's disk below it adds nothing
        if name not in walk.disks:
            walk.disks.append(name)
        return 0, False
    children = node.get("children") or []
    heights, thin = [0], False
    for child in children:
        height, child_thin = _visit(child, walk, kind, source)
        heights.append(height)
        thin = thin or (kind == "lvm" and child_thin)
    height = max(heights) + 1
    if kind == "lvm":
        thin = thin or name.endswith("-tpool")
        if above == "lvm":  # a thin pool's -tpool/_tdata/_tmeta: part of the LV above
            return height, thin
        vg, lv = split_dm_name(_dm_name(node))
        layer = Layer("lvm", name, vg=vg, lv=lv, thin=thin, dm_name=_dm_name(node))
    elif kind in MD_MODULES:
        members = [c for c in children if c.get("fstype") == "linux_raid_member"]
        uuid = str(members[0].get("uuid") or "") if members else ""
        if not uuid:
            raise KdumpyError(f"{source}: {name}: no md member with an array UUID")
        layer = Layer("md", name, uuid=uuid, level=kind)
    elif kind == "crypt":
        headers = [c for c in children if c.get("fstype") == "crypto_LUKS"]
        if len(headers) != 1 or not headers[0].get("uuid"):
            raise KdumpyError(
                f"{source}: {name}: dm-crypt without a LUKS header (plain dm-crypt) "
                "cannot be opened in the capture kernel"
            )
        uuid = str(headers[0]["uuid"])
        layer = Layer("luks", name, uuid=uuid, backing=str(headers[0]["name"]),
                      dm_name=_dm_name(node))  # fmt: skip
    else:
        raise KdumpyError(
            f"{source}: {name} is a {kind or 'unknown'} device: kdumpy cannot bring it up "
            "in the capture kernel (supported: LVM, md RAID, LUKS)"
        )
    previous = walk.layers.get(name)
    walk.layers[name] = (max(height, previous[0]) if previous else height, layer)
    return height, False


def detect(devnode: str) -> Stack:
    """The stack under *devnode* on this machine (lsblk --inverse), with the iSCSI
    sessions and NVMe/TCP controllers of the disks at its bottom (sysfs)."""
    lsblk = find_tool("lsblk")
    proc = subprocess.run(
        [lsblk, "-J", "-s", "-p", "-o", LSBLK_COLUMNS, "--", devnode],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise KdumpyError(f"lsblk {devnode}: {proc.stderr.strip() or proc.returncode}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise KdumpyError(f"lsblk {devnode}: unreadable JSON") from None
    stack = parse_lsblk(data, f"lsblk {devnode}")
    return replace(stack, iscsi=sessions(stack.disks), nvme=controllers(stack.disks))


def runtime_memory(stack: Stack, sys_root: str = "/sys") -> int:
    """Memory the stack holds in the capture kernel while the dump is written, beyond
    its tools' bytes: the parity arrays' stripe caches (members from sysfs)."""
    total = 0
    for layer in stack.layers:
        if layer.kind != "md" or layer.level not in PARITY_LEVELS:
            continue
        kname = os.path.basename(os.path.realpath(layer.device))
        try:
            members = int(Path(sys_root, "block", kname, "md", "raid_disks").read_text())
        except (OSError, ValueError):
            raise KdumpyError(f"{layer.device}: no md/raid_disks in sysfs") from None
        total += NR_STRIPES * members * os.sysconf("SC_PAGE_SIZE")
    return total


def find_tool(name: str) -> str:
    """*name* on PATH or in the sbin directories, else a one-line error naming the package."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if found is None:
        package = {"lvm": "lvm2", "mdadm": "mdadm", "cryptsetup": "cryptsetup-bin",
                   "lsblk": "util-linux", "ip": "iproute2",
                   "iscsistart": "open-iscsi"}.get(name, name)  # fmt: skip
        raise KdumpyError(f"{name} not found: install {package} (the dump target needs it)")
    return found


# ---- LUKS: key files from /etc/crypttab, cipher modules from the header ----


@dataclass(frozen=True)
class LuksKey:
    """How the capture kernel opens one LUKS volume: the key file crypttab names."""

    uuid: str
    key_file: str
    offset: int = 0  # crypttab keyfile-offset=
    size: int = 0  # crypttab keyfile-size= (0: the whole file)


def parse_crypttab(text: str) -> list[tuple[str, str, str, str]]:
    """(name, source, key file, options) per entry of /etc/crypttab."""
    entries = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        words += [""] * (4 - len(words))
        entries.append((words[0], words[1], words[2], words[3]))
    return entries


def _same_source(source: str, layer: Layer) -> bool:
    key, _, value = source.partition("=")
    if key == "UUID" and value:
        return value.lower() == layer.uuid.lower()
    if source.startswith("/"):
        return os.path.realpath(source) == os.path.realpath(layer.backing)
    return False


def luks_keys(stack: Stack, crypttab: str, source: str = "/etc/crypttab") -> list[LuksKey]:
    """The key file of every LUKS layer, or KdumpyError saying why the capture kernel
    could not open it."""
    entries = parse_crypttab(crypttab)
    keys = []
    for layer in stack.layers:
        if layer.kind != "luks":
            continue
        entry = next(
            (e for e in entries if e[0] == layer.dm_name or _same_source(e[1], layer)), None
        )
        what = f"LUKS volume {layer.dm_name} (UUID={layer.uuid}) under the dump target"
        if entry is None:
            raise KdumpyError(
                f"{source}: {what} has no entry; name a key file there: the capture "
                "kernel cannot ask for a passphrase"
            )
        key_file, options = entry[2], entry[3].split(",")
        if key_file in ("", "-", "none") or not key_file.startswith("/"):
            raise KdumpyError(
                f"{source}: {what} has no key file (third field); name one: the capture "
                "kernel cannot ask for a passphrase"
            )
        if any(o.startswith("keyscript=") for o in options):
            raise KdumpyError(f"{source}: {what}: keyscript= cannot run in the capture kernel")
        if not os.path.isfile(key_file):
            raise KdumpyError(f"{source}: {what}: key file {key_file} does not exist")
        offset = _int_option(options, "keyfile-offset", f"{source}: {what}")
        size = _int_option(options, "keyfile-size", f"{source}: {what}")
        keys.append(LuksKey(layer.uuid, key_file, offset, size))
    return keys


def _int_option(options: list[str], name: str, source: str) -> int:
    for option in options:
        key, _, value = option.partition("=")
        if key == name:
            if not value.isdigit():
                raise KdumpyError(f"{source}: {name}={value}: not a number of bytes")
            return int(value)
    return 0


def luks_cipher(luks_dump: str) -> str:
    """``aes-xts-plain64`` from ``cryptsetup luksDump`` (LUKS1 and LUKS2 spellings)."""
    luks2 = re.search(r"^\s+cipher:\s*(\S+)", luks_dump, re.MULTILINE)
    if luks2:
        return luks2.group(1)
    name = re.search(r"^Cipher name:\s*(\S+)", luks_dump, re.MULTILINE)
    mode = re.search(r"^Cipher mode:\s*(\S+)", luks_dump, re.MULTILINE)
    if name and mode:
        return f"{name.group(1)}-{mode.group(1)}"
    raise KdumpyError("cryptsetup luksDump: no cipher in its answer")


def cipher_aliases(cipher: str) -> list[str]:
    """The crypto API names the kernel would request for a dm-crypt cipher spec
    (``aes-xts-plain64`` -> crypto-aes, crypto-xts); resolved through modules.alias."""
    parts = cipher.split("-")
    names = [parts[0]]
    if len(parts) > 1:
        names.append(parts[1])
    if len(parts) > 2 and parts[2].startswith("essiv"):
        iv, _, digest = parts[2].partition(":")
        names += [iv, digest]
    return [f"crypto-{n}" for n in names if n]


def luks_dump(device: str) -> str:
    """``cryptsetup luksDump`` of *device* (the header: cipher, keyslots' KDF memory)."""
    proc = subprocess.run([find_tool("cryptsetup"), "luksDump", "--", device],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise KdumpyError(f"cryptsetup luksDump {device}: {proc.stderr.strip()}")
    return proc.stdout


def read_crypttab(path: Path = Path("/etc/crypttab")) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise KdumpyError(f"{path}: {exc.strerror}") from None
