"""The network as the capture side needs it: our address, and waiting for a route."""

from __future__ import annotations

import ipaddress
import socket
import time

from kdumpy.capture import CaptureError

NET_WAIT = 60.0  # seconds to wait for a route to a remote target


def resolve(host: str) -> str:
    """An IP address for *host* (a name needs /etc/resolv.conf in the initramfs).

    Addresses are returned as they are, and names are passed to getaddrinfo as ASCII
    bytes: a str would go through the idna codec, which the capture initramfs lacks.
    """
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(literal))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host.encode("ascii"), None, proto=socket.IPPROTO_TCP)
        return str(infos[0][4][0])
    except (OSError, UnicodeError, LookupError) as exc:
        raise CaptureError(f"cannot resolve dump target host {host}: {exc}") from None


def source_address(host: str) -> str:
    """The local address the kernel would use to reach *host* (no packet is sent).

    kdump-utils takes the first inet address of the route's device; connecting a UDP
    socket asks the kernel's routing for the same answer without ``ip``.
    """
    ip = resolve(host)
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((ip, 9))
        except OSError as exc:
            raise CaptureError(f"no route to dump target {host}: {exc.strerror}") from None
        return str(sock.getsockname()[0])


def wait_for_route(host: str, timeout: float = NET_WAIT, delay: float = 1.0) -> str:
    """Wait (bounded) until *host* is routable; return our source address for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return source_address(host)
        except CaptureError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
