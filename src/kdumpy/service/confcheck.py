"""The kdump.conf checks that need this machine (kdumpctl's parse_config does them at
start): the capture kernel, which parses the same file, cannot make them.

* fence_kdump_nodes must not name this host (``hostname``, any address of
  ``hostname -I``, or a loopback name): the node would hold off fencing itself.
* a LUKS volume under the dump target must have a key file in /etc/crypttab (the capture
  kernel cannot ask for a passphrase), and every layer must be one the capture initramfs
  can bring up (:mod:`kdumpy.service.stacks.block`).
"""

from __future__ import annotations

import json
import socket
import subprocess

from kdumpy.errors import KdumpyError
from kdumpy.service import targets
from kdumpy.service.config import ConfigError, KdumpConfig
from kdumpy.service.stacks import block

LOOPBACK = ("localhost", "localhost.localdomain", "127.0.0.1", "::1")


def this_host() -> set[str]:
    """This machine's host name and the addresses of its interfaces."""
    names = {socket.gethostname(), *LOOPBACK}
    try:
        proc = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True)
        for link in json.loads(proc.stdout or "[]"):
            names.update(a["local"] for a in link.get("addr_info", []) if "local" in a)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return names


def check_fence_nodes(config: KdumpConfig, host: set[str] | None = None) -> None:
    """ConfigError when a fence_kdump node is this machine."""
    mine = this_host() if host is None else host
    for node in config.fence_kdump_nodes:
        if node in mine:
            raise ConfigError(
                f"{config.source}: Option fence_kdump_nodes cannot contain {node} (this host)"
            )


def check_stack(config: KdumpConfig, crypttab: str | None = None) -> block.Stack | None:
    """ConfigError when the storage stack under a local target cannot come up in the
    capture kernel; the stack otherwise (None: not a block device on this machine)."""
    try:
        resolved = targets.resolve_default_target(config)
    except KdumpyError:
        return None  # no target and path not on a disk: start says why
    target = resolved.target
    if target is None or not (target.is_fs or target.kind == "raw"):
        return None
    try:
        node = targets.device_node(target.spec)
    except KdumpyError:
        return None  # not on this machine (yet): the build says so
    try:
        stack = block.detect(node)
        block.luks_keys(stack, block.read_crypttab() if crypttab is None else crypttab)
    except KdumpyError as exc:
        raise ConfigError(f"{config.source}: dump target {target.spec}: {exc}") from None
    return stack


def check(config: KdumpConfig) -> None:
    """Every host-dependent check."""
    check_fence_nodes(config)
    check_stack(config)
