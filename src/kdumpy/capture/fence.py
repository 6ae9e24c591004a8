"""fence_kdump notifications from the capture kernel, as fence_kdump_send sends them."""

# In a Pacemaker cluster the other nodes fence (power-cycle) a node that stops answering,
# which would cut its dump short.  The fence_kdump agent on those nodes listens on UDP (port
# 7410 by default) and holds the fencing back while messages keep coming.  kdump-utils runs
# ``fence_kdump_send $fence_kdump_args $fence_kdump_nodes &`` before the dump; kdumpy sends
# the same datagram from a daemon thread: 8 bytes, the magic 0x1B302A40 then version 1, each
# a 32-bit integer in the machine's byte order (fence-agents' message.h), to every node,
# every ``-i`` seconds, ``-c`` times (0: until the machine reboots).

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

from kdumpy.capture.log import CaptureLog
from kdumpy.service.config import KdumpConfig
from kdumpy.service.dracut_args import FenceArgs

MAGIC = 0x1B302A40
VERSION = 1
MESSAGE = struct.pack("=II", MAGIC, VERSION)
_FAMILIES = {"auto": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def _address(node: str, args: FenceArgs) -> tuple[int, tuple[Any, ...]] | None:
    """(family, sockaddr) for a node, or None when it does not resolve (yet)."""
    try:
        infos = socket.getaddrinfo(
            node.encode("ascii"), args.port, _FAMILIES[args.family], socket.SOCK_DGRAM
        )
    except (OSError, UnicodeError):
        return None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def send_round(nodes: tuple[str, ...], args: FenceArgs, log: CaptureLog, failed: set[str]) -> int:
    """One message to every node; returns how many went out.  Each node's first failure is
    logged (later ones would only repeat it)."""
    sent = 0
    for node in nodes:
        target = _address(node, args)
        try:
            if target is None:
                raise OSError("cannot resolve it")
            with socket.socket(target[0], socket.SOCK_DGRAM) as sock:
                sock.sendto(MESSAGE, target[1])
            sent += 1
        except OSError as exc:
            if node not in failed:
                log.warn(f"fence_kdump: cannot send to {node}: {exc}")
                failed.add(node)
    return sent


def notify(nodes: tuple[str, ...], args: FenceArgs, log: CaptureLog, stop: threading.Event) -> None:
    """fence_kdump_send's loop: send, then wait the interval, until ``count`` rounds (0:
    until ``stop``)."""
    failed: set[str] = set()
    rounds = 0
    while not stop.is_set():
        send_round(nodes, args, log, failed)
        rounds += 1
        if args.count and rounds >= args.count:
            return
        stop.wait(args.interval)


def start(cfg: KdumpConfig, log: CaptureLog) -> threading.Event | None:
    """Start notifying the fence_kdump_nodes in the background (None when there are none).

    Set the returned event to stop; otherwise the thread ends with the process, which in
    the capture kernel means at the reboot.
    """
    if not cfg.fence_kdump_nodes:
        return None
    stop = threading.Event()
    log.info(f"fence_kdump: notifying {' '.join(cfg.fence_kdump_nodes)} (port {cfg.fence.port})")
    thread = threading.Thread(
        target=notify,
        args=(cfg.fence_kdump_nodes, cfg.fence, log, stop),
        name="fence_kdump",
        daemon=True,
    )
    thread.start()
    return stop
