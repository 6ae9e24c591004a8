"""IEEE 802.1AX (LACP) for the lab's switch: LACPDUs and the ports of one aggregator.

The lab relay (:mod:`kdumpy.lab.netlab`) stands for the switch a guest's bond is cabled
to.  For a bond in mode 802.3ad that switch must be an LACP partner: this host's kernel
has no bonding driver to be one, so this module is the switch's side of the protocol,
clocked by the relay (every function takes the time ``now``, so tests drive it without
sleeping).

* :func:`encode` / :func:`decode`: the LACPDU of 802.1AX-2014 6.4.2 (Slow Protocols,
  ethertype 0x8809, subtype 1, version 1: actor, partner, collector and terminator TLVs,
  110 octets after the Ethernet header).
* :class:`Switch`: the switch's ports, all with one key, so all of them can join one
  aggregator.  Per port the receive machine (CURRENT / EXPIRED / DEFAULTED, recordPDU,
  update_Selected, update_NTT), the selection logic (a port joins the aggregator when its
  partner is the aggregator's partner), the coupled-control mux machine (DETACHED,
  WAITING, ATTACHED, COLLECTING_DISTRIBUTING), the periodic machine (fast or slow, as
  the partner asks) and the transmit machine (at most three LACPDUs a second).
  Simplified where the lab does not need more: one aggregator, no Marker protocol, the
  wait_while of each port is its own (no "Ready" over all ports), the switch's actor is
  always active with the long timeout.

Each change of a port's observable state (its machines, its and its partner's state
bits) is an event (:attr:`Switch.events`): the relay logs them, so a test reads the
switch's own view of whether a bond really aggregated.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections import deque
from dataclasses import dataclass, replace

SLOW_PROTOCOLS_MAC = bytes.fromhex("0180c2000002")
SLOW_PROTOCOLS_TYPE = 0x8809
LACP_SUBTYPE = 1
LACP_VERSION = 1
PDU_LENGTH = 110  # octets after the Ethernet header (802.1AX-2014 6.4.2.3)
ETH_HEADER = 14

# 802.1AX-2014 6.4.4, seconds.
FAST_PERIODIC = 1.0
SLOW_PERIODIC = 30.0
SHORT_TIMEOUT = 3.0
LONG_TIMEOUT = 90.0
AGGREGATE_WAIT = 2.0
MAX_TX_PER_FAST_PERIODIC = 3

# Subtype, version; each TLV: type, length, then its fields (6.4.2.3).
_HEADER = struct.Struct(">BB")
_INFO = struct.Struct(">BBH6sHHHB3x")  # actor or partner information, 20 octets
_COLLECTOR = struct.Struct(">BBH12x")  # 16 octets
_TERMINATOR = struct.Struct(">BB50x")  # terminator TLV and the reserved tail, 52 octets
ACTOR_TLV, PARTNER_TLV, COLLECTOR_TLV, TERMINATOR_TLV = 1, 2, 3, 0
INFO_LENGTH, COLLECTOR_LENGTH = 20, 16


class State(enum.IntFlag):
    """Actor_State / Partner_State bits (6.4.2.3 k)."""

    ACTIVITY = 0x01  # active LACP
    TIMEOUT = 0x02  # short timeout: the sender wants LACPDUs every second
    AGGREGATION = 0x04  # aggregatable (not an individual link)
    SYNCHRONIZATION = 0x08  # in sync: attached to the right aggregator
    COLLECTING = 0x10
    DISTRIBUTING = 0x20
    DEFAULTED = 0x40  # the partner information is the administrative default
    EXPIRED = 0x80  # the receive machine is in EXPIRED


IN_USE = State.SYNCHRONIZATION | State.COLLECTING | State.DISTRIBUTING
# The state bits update_NTT compares (6.4.9).
_NTT_BITS = State.ACTIVITY | State.TIMEOUT | State.SYNCHRONIZATION | State.AGGREGATION


def state_names(state: State) -> list[str]:
    return [flag.name.lower() for flag in State if flag in state and flag.name]


@dataclass(frozen=True)
class PortInfo:
    """One side's information TLV: who the system and the port are, and the port's state."""

    system_priority: int
    system: bytes  # 6 octets, a MAC address
    key: int
    port_priority: int
    port: int
    state: State

    def params(self) -> tuple[int, bytes, int, int, int]:
        return (self.system_priority, self.system, self.key, self.port_priority, self.port)


# The switch's administrative view of a partner it has not heard from: nobody, asking for
# the fast rate (so a port waiting for a bond advertises itself every second).
DEFAULT_PARTNER = PortInfo(0, bytes(6), 0, 0, 0, State.TIMEOUT)


@dataclass(frozen=True)
class Lacpdu:
    actor: PortInfo
    partner: PortInfo
    collector_max_delay: int = 0


def _pack_info(tlv: int, info: PortInfo) -> bytes:
    return _INFO.pack(tlv, INFO_LENGTH, info.system_priority, info.system, info.key,
                      info.port_priority, info.port, int(info.state))  # fmt: skip


def encode(pdu: Lacpdu) -> bytes:
    """The LACPDU's 110 octets (what follows the Ethernet header's ethertype)."""
    return b"".join((
        _HEADER.pack(LACP_SUBTYPE, LACP_VERSION),
        _pack_info(ACTOR_TLV, pdu.actor),
        _pack_info(PARTNER_TLV, pdu.partner),
        _COLLECTOR.pack(COLLECTOR_TLV, COLLECTOR_LENGTH, pdu.collector_max_delay),
        _TERMINATOR.pack(TERMINATOR_TLV, 0),
    ))  # fmt: skip


def frame(source_mac: bytes, pdu: Lacpdu) -> bytes:
    """An Ethernet frame carrying *pdu* to the Slow Protocols group address."""
    return SLOW_PROTOCOLS_MAC + source_mac + struct.pack(">H", SLOW_PROTOCOLS_TYPE) + encode(pdu)


def is_slow_protocols(data: bytes) -> bool:
    """An untagged Slow Protocols frame (LACP, Marker, OAM...): never forwarded by a
    switch (802.1AX 6.2.11: the group address is not relayed)."""
    return len(data) >= ETH_HEADER and data[12:14] == b"\x88\x09"


def _unpack_info(payload: bytes, offset: int, tlv: int) -> PortInfo | None:
    kind, length, sys_prio, system, key, port_prio, port, state = _INFO.unpack_from(payload, offset)
    if kind != tlv or length != INFO_LENGTH:
        return None
    return PortInfo(sys_prio, system, key, port_prio, port, State(state))


def decode(data: bytes) -> Lacpdu | None:
    """The LACPDU in an Ethernet frame, or None for anything else or anything malformed
    (too short, another subtype, version 0, a TLV of the wrong type or length)."""
    if not is_slow_protocols(data) or len(data) < ETH_HEADER + PDU_LENGTH:
        return None
    payload = data[ETH_HEADER:]
    subtype, version = _HEADER.unpack_from(payload, 0)
    # Version 2 LACPDUs (802.1AX-2014 6.4.2.4.1) start with the same TLVs: read those.
    if subtype != LACP_SUBTYPE or version < 1:
        return None
    actor = _unpack_info(payload, 2, ACTOR_TLV)
    partner = _unpack_info(payload, 22, PARTNER_TLV)
    kind, length, max_delay = _COLLECTOR.unpack_from(payload, 42)
    if actor is None or partner is None or kind != COLLECTOR_TLV or length != COLLECTOR_LENGTH:
        return None
    return Lacpdu(actor, partner, max_delay)


class Rx(enum.Enum):
    CURRENT = "current"
    EXPIRED = "expired"
    DEFAULTED = "defaulted"


class Mux(enum.Enum):
    DETACHED = "detached"
    WAITING = "waiting"
    ATTACHED = "attached"
    COLLECTING_DISTRIBUTING = "collecting_distributing"


class Port:
    """One switch port's LACP state (the partner is the guest NIC cabled to it)."""

    def __init__(self, number: int, mac: bytes, now: float) -> None:
        self.number, self.mac = number, mac
        self.state = State.ACTIVITY | State.AGGREGATION | State.DEFAULTED
        self.partner = DEFAULT_PARTNER
        self.rx = Rx.DEFAULTED
        self.selected = False
        # The partner (system, key) of the aggregation this port was selected into: kept
        # until the mux has detached it, whatever its partner says meanwhile.
        self.aggregator: tuple[int, bytes, int] | None = None
        self.mux = Mux.DETACHED
        self.current_while: float | None = None
        self.wait_while = 0.0
        self.ntt = True
        self.next_periodic = now
        self.sent: deque[float] = deque()
        self.lacpdus_in = self.lacpdus_out = 0

    def partner_aggregator(self) -> tuple[int, bytes, int]:
        """What the partner's ports of one aggregation share: its system and key."""
        return (self.partner.system_priority, self.partner.system, self.partner.key)

    def aggregated(self) -> bool:
        """Both ends say the link carries the aggregate's traffic."""
        return self.mux is Mux.COLLECTING_DISTRIBUTING and IN_USE in self.partner.state


class Switch:
    """An LACP switch's ports, all with one key: they form one aggregator with the bond
    whose LACPDUs they receive (the aggregator's partner is that bond's system and key)."""

    def __init__(self, ports: int, system: bytes, now: float, key: int = 1,
                 system_priority: int = 0x8000, port_priority: int = 0x8000) -> None:  # fmt: skip
        self.system, self.key = system, key
        self.system_priority, self.port_priority = system_priority, port_priority
        # Port i's MAC: the system's with the port number in the last octet.
        self.ports = [Port(i + 1, system[:5] + bytes([i + 1]), now) for i in range(ports)]
        self.events: list[dict] = []
        self._seen: list[tuple] = [() for _ in self.ports]
        self._note(now)

    def actor_info(self, port: Port) -> PortInfo:
        return PortInfo(self.system_priority, self.system, self.key, self.port_priority,
                        port.number, port.state)  # fmt: skip

    # -- the machines ---------------------------------------------------------------

    def receive(self, index: int, data: bytes, now: float) -> list[tuple[int, bytes]]:
        """A frame from the guest's side of port *index*: LACPDUs are recorded, anything
        else (or malformed) is ignored.  Returns the frames to send, as (port, frame)."""
        pdu = decode(data)
        if pdu is None:
            return self.tick(now)
        port = self.ports[index]
        port.lacpdus_in += 1
        actor = self.actor_info(port)
        # update_Selected: another partner (system, key or port) leaves the aggregator.
        if (pdu.actor.params() != port.partner.params()
                or (pdu.actor.state ^ port.partner.state) & State.AGGREGATION):  # fmt: skip
            port.selected = False
        # update_NTT: the partner's view of us is stale: tell it now.
        if (pdu.partner.params() != actor.params()
                or (pdu.partner.state ^ port.state) & _NTT_BITS):  # fmt: skip
            port.ntt = True
        # recordPDU: the partner is in sync only if it has our information right (or is
        # an individual link) and says so.
        matched = (pdu.partner.params() == actor.params()
                   and not (pdu.partner.state ^ port.state) & State.AGGREGATION)  # fmt: skip
        individual = State.AGGREGATION not in pdu.actor.state
        sync = State.SYNCHRONIZATION in pdu.actor.state and (matched or individual)
        partner_state = pdu.actor.state & ~State.SYNCHRONIZATION
        port.partner = replace(pdu.actor, state=partner_state | (State.SYNCHRONIZATION
                                                                 if sync else 0))  # fmt: skip
        port.state &= ~(State.DEFAULTED | State.EXPIRED)
        port.rx = Rx.CURRENT
        port.current_while = now + self._timeout(port)
        return self.tick(now)

    def _timeout(self, port: Port) -> float:
        return SHORT_TIMEOUT if State.TIMEOUT in port.state else LONG_TIMEOUT

    def tick(self, now: float) -> list[tuple[int, bytes]]:
        """Run the timers and machines to a stable state; the LACPDUs due, as (port, frame)."""
        for port in self.ports:
            self._expire(port, now)
        for _ in range(4 * len(self.ports) + 4):  # each pass moves a machine one step
            if not (self._select() | self._mux(now)):
                break
        out = [(i, f) for i, port in enumerate(self.ports) if (f := self._transmit(port, now))]
        self._note(now)
        return out

    def _expire(self, port: Port, now: float) -> None:
        if port.current_while is None or now < port.current_while:
            return
        if port.rx is Rx.CURRENT:
            # EXPIRED: the partner is out of sync until it speaks again (6.4.12).
            port.rx = Rx.EXPIRED
            port.partner = replace(port.partner, state=(port.partner.state
                                   & ~State.SYNCHRONIZATION) | State.TIMEOUT)  # fmt: skip
            port.state |= State.EXPIRED
            port.current_while = now + SHORT_TIMEOUT
        else:
            # DEFAULTED: nobody there; the port leaves the aggregator.
            port.rx = Rx.DEFAULTED
            port.selected = False
            port.partner = DEFAULT_PARTNER
            port.state = (port.state & ~State.EXPIRED) | State.DEFAULTED
            port.current_while = None

    def _select(self) -> bool:
        """Selection logic: a detached port whose partner is aggregatable joins the
        aggregator if the aggregator is free (no port selected or still attached) or
        already bound to that partner system and key."""
        changed = False
        for port in self.ports:
            if port.selected or port.rx is not Rx.CURRENT or port.mux is not Mux.DETACHED:
                continue  # a port leaving an aggregation detaches first
            if State.AGGREGATION not in port.partner.state:
                continue  # an individual link: not part of the aggregate
            bound = {q.aggregator for q in self.ports if q is not port and q.aggregator}
            if not bound or bound == {port.partner_aggregator()}:
                port.selected, port.aggregator = True, port.partner_aggregator()
                changed = True
        return changed

    def _mux(self, now: float) -> bool:
        changed = False
        for port in self.ports:
            before = port.mux
            if port.mux is Mux.DETACHED:
                if port.selected:
                    port.mux, port.wait_while = Mux.WAITING, now + AGGREGATE_WAIT
            elif port.mux is Mux.WAITING:
                if not port.selected:
                    self._enter(port, Mux.DETACHED)
                elif now >= port.wait_while:
                    self._enter(port, Mux.ATTACHED)
            elif port.mux is Mux.ATTACHED:
                if not port.selected:
                    self._enter(port, Mux.DETACHED)
                elif State.SYNCHRONIZATION in port.partner.state:
                    self._enter(port, Mux.COLLECTING_DISTRIBUTING)
            elif not port.selected or State.SYNCHRONIZATION not in port.partner.state:
                self._enter(port, Mux.ATTACHED)
            changed |= port.mux is not before
        return changed

    def _enter(self, port: Port, mux: Mux) -> None:
        port.mux = mux
        if mux is Mux.DETACHED:
            port.aggregator = None
        port.state &= ~IN_USE
        if mux is Mux.ATTACHED:
            port.state |= State.SYNCHRONIZATION
        elif mux is Mux.COLLECTING_DISTRIBUTING:
            port.state |= IN_USE
        port.ntt = True

    def _transmit(self, port: Port, now: float) -> bytes | None:
        """Periodic and transmit machines: the partner's timeout sets the rate."""
        period = FAST_PERIODIC if State.TIMEOUT in port.partner.state else SLOW_PERIODIC
        port.next_periodic = min(port.next_periodic, now + period)
        if now >= port.next_periodic:
            port.ntt, port.next_periodic = True, now + period
        while port.sent and port.sent[0] <= now - FAST_PERIODIC:
            port.sent.popleft()
        if not port.ntt or len(port.sent) >= MAX_TX_PER_FAST_PERIODIC:
            return None
        port.ntt = False
        port.sent.append(now)
        port.lacpdus_out += 1
        pdu = Lacpdu(self.actor_info(port), port.partner)
        return frame(port.mac, pdu)

    def deadline(self) -> float:
        """When :meth:`tick` next has something to do (a timer, a deferred LACPDU)."""
        times = []
        for port in self.ports:
            times.append(port.next_periodic)
            if port.current_while is not None:
                times.append(port.current_while)
            if port.mux is Mux.WAITING:
                times.append(port.wait_while)
            if port.ntt and port.sent:
                times.append(port.sent[0] + FAST_PERIODIC)
        return min(times)

    # -- the data path ----------------------------------------------------------------

    def egress(self, data: bytes) -> list[int]:
        """The ports a frame toward the guest leaves by: one distributing port per flow,
        as an aggregated switch does; every port while there is no aggregate (the ports
        are then individual links, and the hub of :mod:`kdumpy.lab.netlab`)."""
        distributing = [i for i, p in enumerate(self.ports) if State.DISTRIBUTING in p.state]
        if not distributing:
            return list(range(len(self.ports)))
        return [distributing[zlib.crc32(flow_key(data)) % len(distributing)]]

    def accepts(self, index: int) -> bool:
        """A data frame from the guest on port *index* is collected: the port collects, or
        is not in the aggregate at all (an individual link).  A port still joining (waiting,
        attached) drops it, as the standard's collector does."""
        port = self.ports[index]
        return State.COLLECTING in port.state or port.mux is Mux.DETACHED

    # -- the record -------------------------------------------------------------------

    def _note(self, now: float) -> None:
        for i, port in enumerate(self.ports):
            seen = (port.rx, port.mux, port.state, port.partner)
            if seen == self._seen[i]:
                continue
            self._seen[i] = seen
            self.events.append({
                "t": round(now, 3), "port": i, "rx": port.rx.value, "mux": port.mux.value,
                "switch": state_names(port.state), "guest": state_names(port.partner.state),
                "guest_system": port.partner.system.hex(":"), "guest_key": port.partner.key,
                "guest_port": port.partner.port, "aggregated": port.aggregated(),
            })  # fmt: skip

    def counters(self) -> list[dict]:
        return [{"port": i, "lacpdus_in": p.lacpdus_in, "lacpdus_out": p.lacpdus_out}
                for i, p in enumerate(self.ports)]  # fmt: skip


def flow_key(data: bytes) -> bytes:
    """What identifies a frame's flow: IP addresses and TCP/UDP ports where the frame has
    them (a layer 3+4 hash, as switches offer), else the MAC addresses."""
    offset, ethertype = 12, data[12:14]
    if ethertype == b"\x81\x00":
        offset, ethertype = 16, data[16:18]
    ip = offset + 2
    if ethertype == b"\x08\x00" and len(data) >= ip + 20:
        header = (data[ip] & 0x0F) * 4
        proto, fragment = data[ip + 9], struct.unpack_from(">H", data, ip + 6)[0] & 0x1FFF
        ports = data[ip + header : ip + header + 4] if proto in (6, 17) and not fragment else b""
        return data[ip + 12 : ip + 20] + bytes([proto]) + ports
    if ethertype == b"\x86\xdd" and len(data) >= ip + 40:
        proto = data[ip + 6]
        ports = data[ip + 40 : ip + 44] if proto in (6, 17) else b""
        return data[ip + 8 : ip + 40] + bytes([proto]) + ports
    return data[:12]
