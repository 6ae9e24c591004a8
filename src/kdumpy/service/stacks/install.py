"""What a storage stack adds to the capture initramfs, and only when the target has it.

:func:`plan_stack` turns a detected :class:`~.block.Stack` into a :class:`StackFiles`:
the tools (``mdadm`` for md, ``lvm`` for LVM, ``cryptsetup`` for LUKS), their
configuration for a udev-less initramfs, the LUKS key files, the kernel modules, and the
plan ``/etc/kdumpy/stacks.json`` that :mod:`kdumpy.capture.stacks` follows bottom-up
(iSCSI logins first: ``iscsistart``, the CHAP secrets in files of their own; NVMe/TCP
connections need no tool: the capture side writes to ``/dev/nvme-fabrics``).
A target on a plain disk gets none of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from kdumpy.errors import KdumpyError
from kdumpy.service.stacks import iscsi, nvme
from kdumpy.service.stacks.block import (
    LuksKey,
    Stack,
    cipher_aliases,
    find_tool,
    luks_cipher,
)
from kdumpy.service.stacks.iscsi import IscsiSession
from kdumpy.service.stacks.nvme import NvmeTcpController

PLAN_PATH = "/etc/kdumpy/stacks.json"
KEY_DIR = "/etc/kdumpy/luks"
CHAP_DIR = "/etc/kdumpy/iscsi"
MDADM_CONF = "/etc/mdadm/mdadm.conf"
LVM_CONF = "/etc/lvm/lvm.conf"
# LVM without udev or lvmetad (lvm creates the /dev nodes itself), no metadata backups
# on a crashed system, no dmeventd, and no thin_check: the pool is only read and
# written through once, and thin_check would add pdata_tools (~2 MB) to the initramfs.
# reserved_memory as kdump-utils' module-setup.sh sets it (KiB locked by lvm).
LVM_CONF_TEXT = """\
devices {
    obtain_device_list_from_udev = 0
    use_devicesfile = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
    reserved_memory = 1024
}
global {
    thin_check_executable = ""
}
backup {
    backup = 0
    archive = 0
}
"""


@dataclass
class StackFiles:
    """Files, tools and modules for one stack; the initramfs builder adds them."""

    tools: list[str] = field(default_factory=list)  # host paths of ELF executables
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # dest -> (data, mode)
    host_files: dict[str, tuple[str, int]] = field(default_factory=dict)  # dest -> (src, mode)
    modules: list[str] = field(default_factory=list)
    disks: list[str] = field(default_factory=list)  # at the bottom: their drivers go in too
    plan: dict = field(default_factory=dict)
    # What the stack costs, for the manifest and kdumpy estimate: layer descriptions,
    # tool_bytes (unpacked), luks_memory (KDF + cryptsetup, kdumpctl's crypt_size).
    summary: dict = field(default_factory=dict)


def plan_stack(
    stack: Stack,
    keys: list[LuksKey],
    luks_dumps: dict[str, str],
    resolve_alias: Callable[[str], list[str]],
    tool: Callable[[str], str] = find_tool,
) -> StackFiles:
    """The capture initramfs's share of *stack*.

    *luks_dumps* maps a LUKS UUID to its ``cryptsetup luksDump`` (for the cipher modules);
    *resolve_alias* maps a crypto alias to loadable modules (``ModuleIndex.resolve``).
    """
    out = StackFiles(disks=list(stack.disks))
    if not stack.layers and not stack.network and not stack.iscsi and not stack.nvme:
        return out
    steps = _iscsi_steps(stack.iscsi, out, tool) + _nvme_steps(stack.nvme, out)
    key_by_uuid = {k.uuid: k for k in keys}
    md = [layer for layer in stack.layers if layer.kind == "md"]
    if md:
        out.tools.append(tool("mdadm"))
        lines = ["DEVICE partitions", "AUTO -all"]
        lines += [f"ARRAY {layer.device} UUID={_md_uuid(layer.uuid)}" for layer in md]
        out.files[MDADM_CONF] = (("\n".join(lines) + "\n").encode(), 0o644)
    if any(layer.kind == "lvm" for layer in stack.layers):
        out.tools.append(tool("lvm"))
        out.files[LVM_CONF] = (LVM_CONF_TEXT.encode(), 0o644)
    if any(layer.kind == "luks" for layer in stack.layers):
        out.tools.append(tool("cryptsetup"))
    if stack.network:
        out.tools.append(tool("ip"))  # iproute2: bonds, VLANs, bridges, IPv6 routes
    for layer in stack.layers:
        out.modules += [m for m in layer.modules() if m not in out.modules]
        step: dict[str, object] = {"kind": layer.kind, "device": layer.device}
        if layer.kind == "md":
            step.update(uuid=layer.uuid, level=layer.level)
        elif layer.kind == "lvm":
            step.update(vg=layer.vg, lv=layer.lv, thin=layer.thin)
        else:
            key = key_by_uuid.get(layer.uuid)
            if key is None:
                raise KdumpyError(f"LUKS volume {layer.dm_name}: no key file")
            dest = f"{KEY_DIR}/{layer.uuid}.key"
            out.host_files[dest] = (key.key_file, 0o400)
            cipher = luks_cipher(luks_dumps.get(layer.uuid, ""))
            for alias in cipher_aliases(cipher):
                out.modules += [m for m in resolve_alias(alias) if m not in out.modules]
            step.update(uuid=layer.uuid, name=layer.dm_name, backing=layer.backing,
                        key_file=dest, keyfile_offset=key.offset, keyfile_size=key.size,
                        cipher=cipher)  # fmt: skip
        steps.append(step)
    out.plan = {"device": stack.device, "layers": steps}
    if stack.network:
        out.plan["network"] = stack.network
    out.files[PLAN_PATH] = ((json.dumps(out.plan, indent=1) + "\n").encode(), 0o644)
    return out


def _iscsi_steps(sessions: tuple[IscsiSession, ...], out: StackFiles,
                 tool: Callable[[str], str]) -> list[dict]:  # fmt: skip
    """One login per target and portal (its LUNs come with it), at the bottom of the
    stack; CHAP secrets in a file of their own at 0400, not in the plan."""
    steps: list[dict] = []
    if not sessions:
        return steps
    out.tools.append(tool("iscsistart"))
    out.modules += [m for m in iscsi.MODULES if m not in out.modules]
    by_portal: dict[tuple[str, str, int], dict] = {}
    for s in sessions:
        step = by_portal.get((s.target, s.address, s.port))
        if step is not None:
            step["luns"] = sorted({*step["luns"], s.lun})
            continue
        step = {"kind": "iscsi", "initiator": s.initiator, "target": s.target,
                "tpgt": s.tpgt, "address": s.address, "port": s.port, "luns": [s.lun]}  # fmt: skip
        if s.chap:
            dest = f"{CHAP_DIR}/{len(by_portal)}.chap"
            out.files[dest] = ((json.dumps(asdict(s.chap)) + "\n").encode(), 0o400)
            step["chap_file"] = dest
        by_portal[(s.target, s.address, s.port)] = step
        steps.append(step)
    return steps


def _nvme_steps(found: tuple[NvmeTcpController, ...], out: StackFiles) -> list[dict]:
    """One step per subsystem, at the bottom of the stack with the iSCSI logins: its
    namespaces and every controller address it was reached by (the paths of a multipath
    namespace: the capture kernel needs one of them)."""
    steps: dict[str, dict] = {}
    if found:
        out.modules += [m for m in nvme.MODULES if m not in out.modules]
    for c in found:
        path = {"traddr": c.traddr, "trsvcid": c.trsvcid}
        if c.host_traddr:
            path["host_traddr"] = c.host_traddr
        step = steps.get(c.subsysnqn)
        if step is None:
            step = {"kind": "nvme-tcp", "subsysnqn": c.subsysnqn, "hostnqn": c.hostnqn,
                    "nsids": [], "paths": []}  # fmt: skip
            if c.hostid:
                step["hostid"] = c.hostid
            steps[c.subsysnqn] = step
        step["nsids"] = sorted({*step["nsids"], c.nsid})
        if path not in step["paths"]:
            step["paths"].append(path)
    return list(steps.values())


def _md_uuid(uuid: str) -> str:
    """mdadm's spelling of an array UUID (lsblk prints blkid's, with dashes)."""
    digits = uuid.replace("-", "").replace(":", "")
    if len(digits) != 32:
        return uuid
    return ":".join(digits[i : i + 8] for i in range(0, 32, 8))
