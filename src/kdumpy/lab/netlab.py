"""A lab network a guest reaches through several NICs, tagged with a VLAN: the host side
of bonds, VLANs and bridges in the guest.

QEMU's user network carries no VLAN tags, and this host's kernel has neither bonding,
802.1Q nor VLAN-filtering bridges, so the "switch" is a small relay process in a
network namespace the test creates:

* each guest NIC is a QEMU ``-netdev socket,udp=`` port: one datagram per Ethernet frame;
* the relay is a trunk port for VLAN *vlan*: a frame from any NIC must carry that tag,
  which it strips before writing it to a tap device; a frame from the tap gets the tag
  and goes to every NIC (a hub: a bond's backup slave drops it, as on a real switch);
* the tap holds the servers' addresses (IPv4 and IPv6) in the namespace, where the test
  runs its sshd; QEMU runs there too (the UDP ports are the namespace's loopback).

``python3 -m kdumpy.lab.netlab TAP VLAN PORT...`` is the relay (run by :class:`LabNet`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

from kdumpy.errors import KdumpyError

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
TPID = b"\x81\x00"
READY = "kdumpy-netlab-ready"


@dataclass
class LabNet:
    """The namespace, its relay and the guest NICs' QEMU arguments."""

    nics: int = 2
    vlan: int = 10
    addresses: tuple[str, ...] = ("192.168.77.1/24", "fd77::1/64")
    name: str = field(default_factory=lambda: f"kdumpy-{uuid.uuid4().hex[:8]}")
    tap: str = "kdsw0"
    base_port: int = 47100
    relay: subprocess.Popen[str] | None = None

    def macs(self) -> list[str]:
        return [f"52:54:00:77:00:{i + 1:02x}" for i in range(self.nics)]

    def qemu_args(self) -> list[str]:
        """-netdev/-device pairs: NIC i sends to the relay's port, listens on its own."""
        args: list[str] = []
        for i, mac in enumerate(self.macs()):
            relay, own = self.base_port + 2 * i, self.base_port + 2 * i + 1
            args += ["-netdev", f"socket,id=lab{i},udp=127.0.0.1:{relay},"
                     f"localaddr=127.0.0.1:{own}",
                     "-device", f"virtio-net-pci,netdev=lab{i},mac={mac}"]  # fmt: skip
        return args

    def start(self) -> LabNet:
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        self.relay = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-m", "kdumpy.lab.netlab",
             self.tap, str(self.vlan), *(str(self.base_port + 2 * i) for i in range(self.nics))],
            stdout=subprocess.PIPE, text=True, env={**os.environ},
        )  # fmt: skip
        assert self.relay.stdout is not None
        line = self.relay.stdout.readline().strip()
        if line != READY:
            self.stop()
            raise KdumpyError(f"lab network relay did not start: {line or 'no answer'}")
        for address in self.addresses:
            extra = ["nodad"] if ":" in address else []
            _run(["ip", "-n", self.name, "addr", "add", address, "dev", self.tap, *extra])
        _run(["ip", "-n", self.name, "link", "set", self.tap, "up"])
        return self

    def stop(self) -> None:
        if self.relay is not None and self.relay.poll() is None:
            self.relay.terminate()
            self.relay.wait(timeout=10)
        self.relay = None
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def __enter__(self) -> LabNet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KdumpyError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def untag(frame: bytes, vlan: int) -> bytes | None:
    """The frame without its 802.1Q tag if it carries *vlan*; None otherwise (dropped)."""
    if len(frame) < 18 or frame[12:14] != TPID:
        return None
    if struct.unpack(">H", frame[14:16])[0] & 0x0FFF != vlan:
        return None
    return frame[:12] + frame[16:]


def tag(frame: bytes, vlan: int) -> bytes:
    return frame[:12] + TPID + struct.pack(">H", vlan & 0x0FFF) + frame[12:]


def relay(tap_name: str, vlan: int, ports: list[int]) -> None:
    """Forward frames between the guest NICs' UDP ports and the tap, forever."""
    tap = open_tap(tap_name)
    socks = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        socks.append((sock, ("127.0.0.1", port + 1)))
    print(READY, flush=True)
    by_fd = {s.fileno(): s for s, _ in socks}
    while True:
        ready, _, _ = select.select([tap, *by_fd], [], [])
        for fd in ready:
            if fd == tap:
                frame = tag(os.read(tap, 65536), vlan)
                for sock, peer in socks:
                    # QEMU not listening (yet): a frame lost, as on a wire.
                    with contextlib.suppress(OSError):
                        sock.sendto(frame, peer)
            else:
                inner = untag(by_fd[fd].recv(65536), vlan)
                if inner is not None:
                    os.write(tap, inner)


if __name__ == "__main__":
    relay(sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]])
