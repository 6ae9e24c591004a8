"""The kdump.conf checks that need this machine (kdumpctl's parse_config does them at
start): the capture kernel, which parses the same file, cannot make them.

* fence_kdump_nodes must not name this host (``hostname``, any address of
  ``hostname -I``, or a loopback name): the node would hold off fencing itself.
"""

from __future__ import annotations

import json
import socket
import subprocess

from kdumpy.service.config import ConfigError, KdumpConfig

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


def check(config: KdumpConfig) -> None:
    """Every host-dependent check."""
    check_fence_nodes(config)
