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

VLAN 0 makes the NICs untagged access ports.  With ``lacp`` the relay is also an LACP
switch (:mod:`kdumpy.lab.lacp`), the partner a bond in mode 802.3ad needs: it answers
each port's LACPDUs as one aggregator, sends its own, sends a frame from the tap by one
distributing port per flow (not to every NIC), and logs each port's LACP state changes
as JSON lines (:meth:`LabNet.lacp_events`), the switch's own record of whether the bond
aggregated.  The NICs then report 1 Gb/s full duplex: Linux's bonding runs LACP only on
full-duplex ports (a virtio NIC's duplex is unknown by default).

``python3 -m kdumpy.lab.netlab TAP VLAN PORT... [--lacp LOG]`` is the relay (run by
:class:`LabNet`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.lacp import Switch, is_slow_protocols

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
TPID = b"\x81\x00"
READY = "kdumpy-netlab-ready"
SWITCH_SYSTEM = bytes.fromhex("020000770000")  # the LACP switch's system (locally administered)


@dataclass
class LabNet:
    """The namespace, its relay and the guest NICs' QEMU arguments."""

    nics: int = 2
    vlan: int = 10
    addresses: tuple[str, ...] = ("192.168.77.1/24", "fd77::1/64")
    name: str = field(default_factory=lambda: f"kdumpy-{uuid.uuid4().hex[:8]}")
    tap: str = "kdsw0"
    base_port: int = 47100
    # The relay's LACP log (JSON lines): set, the relay is an LACP switch (see above).
    lacp_log: Path | None = None
    relay: subprocess.Popen[str] | None = None

    def macs(self) -> list[str]:
        return [f"52:54:00:77:00:{i + 1:02x}" for i in range(self.nics)]

    def qemu_args(self) -> list[str]:
        """-netdev/-device pairs: NIC i sends to the relay's port, listens on its own."""
        args: list[str] = []
        duplex = ",speed=1000,duplex=full" if self.lacp_log is not None else ""
        for i, mac in enumerate(self.macs()):
            relay, own = self.base_port + 2 * i, self.base_port + 2 * i + 1
            args += ["-netdev", f"socket,id=lab{i},udp=127.0.0.1:{relay},"
                     f"localaddr=127.0.0.1:{own}",
                     "-device", f"virtio-net-pci,netdev=lab{i},mac={mac}{duplex}"]  # fmt: skip
        return args

    def start(self) -> LabNet:
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        lacp = ["--lacp", str(self.lacp_log)] if self.lacp_log is not None else []
        self.relay = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-m", "kdumpy.lab.netlab",
             self.tap, str(self.vlan), *(str(self.base_port + 2 * i) for i in range(self.nics)),
             *lacp],
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

    def lacp_events(self) -> list[dict]:
        """The LACP switch's log so far: one record per change of a port's state (see
        :class:`kdumpy.lab.lacp.Switch`, times are the host's monotonic clock), and the
        per-port counters the relay writes when it stops."""
        if self.lacp_log is None or not self.lacp_log.exists():
            return []
        return [json.loads(line) for line in self.lacp_log.read_text().splitlines() if line]

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
    """The frame without its 802.1Q tag if it carries *vlan*; None otherwise (dropped).
    VLAN 0 is an access port: the frame as it is, unless it is tagged."""
    if vlan == 0:
        return frame if len(frame) >= 14 and frame[12:14] != TPID else None
    if len(frame) < 18 or frame[12:14] != TPID:
        return None
    if struct.unpack(">H", frame[14:16])[0] & 0x0FFF != vlan:
        return None
    return frame[:12] + frame[16:]


def tag(frame: bytes, vlan: int) -> bytes:
    if vlan == 0:
        return frame
    return frame[:12] + TPID + struct.pack(">H", vlan & 0x0FFF) + frame[12:]


def relay(tap_name: str, vlan: int, ports: list[int], lacp_log: Path | None = None) -> None:
    """Forward frames between the guest NICs' UDP ports and the tap, until SIGTERM."""
    tap = open_tap(tap_name)
    socks = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        socks.append((sock, ("127.0.0.1", port + 1)))
    switch = Switch(len(ports), SWITCH_SYSTEM, time.monotonic()) if lacp_log else None
    log = open(lacp_log, "a") if lacp_log else None  # noqa: SIM115 (open until SIGTERM)
    frames = [{"port": i, "to_guest": 0, "from_guest": 0} for i in range(len(ports))]

    def send(index: int, frame: bytes) -> None:
        sock, peer = socks[index]
        # QEMU not listening (yet): a frame lost, as on a wire.
        with contextlib.suppress(OSError):
            sock.sendto(frame, peer)

    def flush_events() -> None:
        if switch is not None and log is not None and switch.events:
            log.writelines(json.dumps(e) + "\n" for e in switch.events)
            log.flush()
            switch.events.clear()

    def stop(*_: object) -> None:
        if switch is not None and log is not None:
            counters = [{**c, **f} for c, f in zip(switch.counters(), frames, strict=True)]
            log.write(json.dumps({"counters": counters}) + "\n")
            log.close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(READY, flush=True)
    by_fd = {s.fileno(): i for i, (s, _) in enumerate(socks)}
    while True:
        wait = None
        if switch is not None:
            wait = min(max(switch.deadline() - time.monotonic(), 0.0), 1.0)
        ready, _, _ = select.select([tap, *by_fd], [], [], wait)
        now = time.monotonic()
        for fd in ready:
            if fd == tap:
                frame = os.read(tap, 65536)
                egress = switch.egress(frame) if switch else range(len(socks))
                for index in egress:
                    frames[index]["to_guest"] += 1
                    send(index, tag(frame, vlan))
                continue
            index = by_fd[fd]
            data = socks[index][0].recv(65536)
            if switch is not None and is_slow_protocols(data):
                for out, frame in switch.receive(index, data, now):
                    send(out, frame)
                continue
            if switch is not None and not switch.accepts(index):
                continue  # a port joining the aggregate does not collect yet
            inner = untag(data, vlan)
            if inner is not None:
                frames[index]["from_guest"] += 1
                os.write(tap, inner)
        if switch is not None:
            for out, frame in switch.tick(now):
                send(out, frame)
            flush_events()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python3 -m kdumpy.lab.netlab")
    parser.add_argument("tap")
    parser.add_argument("vlan", type=int, help="the trunk's VLAN; 0: untagged access ports")
    parser.add_argument("ports", type=int, nargs="+", help="the guest NICs' UDP ports")
    parser.add_argument("--lacp", type=Path, help="be an LACP switch; log its ports here")
    args = parser.parse_args()
    relay(args.tap, args.vlan, args.ports, args.lacp)
