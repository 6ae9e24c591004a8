"""The lab switch's LACP (kdumpy.lab.lacp): LACPDU bytes at 802.1AX-2014's offsets, and the
switch's ports answering a bond's LACPDUs as one aggregator, on a clock the test drives.

The byte layouts are written here from the standard's table (6.4.2.3: octet offsets
after the ethertype), not from the module's structs; the guest's LACPDUs are built the
same way, field by field, with what Linux's bonding driver in mode 802.3ad sends.
"""

from __future__ import annotations

import struct

import pytest

from kdumpy.lab import lacp
from kdumpy.lab.lacp import Lacpdu, Mux, PortInfo, Rx, State, Switch

SWITCH = bytes.fromhex("020000770000")
GUEST = bytes.fromhex("525400770001")  # a bond's system: its MAC
GUEST_KEY = 0x0011  # Linux: speed bits (1 Gb/s = 4) << 1 | full duplex
A = State.ACTIVITY
T = State.TIMEOUT
G = State.AGGREGATION
S = State.SYNCHRONIZATION
CD = State.COLLECTING | State.DISTRIBUTING


def standard_pdu(actor: tuple, partner: tuple, max_delay: int = 0) -> bytes:
    """An LACPDU written octet by octet from 802.1AX-2014 Figure 6-7 / 6.4.2.3."""
    pdu = bytearray(110)
    pdu[0], pdu[1] = 0x01, 0x01  # Subtype = LACP, Version Number = 1
    for base, tlv, (sys_prio, system, key, port_prio, port, state) in (
        (2, 0x01, actor), (22, 0x02, partner)):  # fmt: skip
        pdu[base], pdu[base + 1] = tlv, 0x14  # TLV_type, Information_Length = 20
        pdu[base + 2 : base + 4] = sys_prio.to_bytes(2, "big")
        pdu[base + 4 : base + 10] = system
        pdu[base + 10 : base + 12] = key.to_bytes(2, "big")
        pdu[base + 12 : base + 14] = port_prio.to_bytes(2, "big")
        pdu[base + 14 : base + 16] = port.to_bytes(2, "big")
        pdu[base + 16] = state
        # base+17..19: Reserved (3 octets), zero
    pdu[42], pdu[43] = 0x03, 0x10  # Collector Information, length 16
    pdu[44:46] = max_delay.to_bytes(2, "big")
    # 46..57 reserved; 58, 59: Terminator TLV type 0, length 0; 60..109 reserved
    return bytes(pdu)


def eth(src: bytes, payload: bytes) -> bytes:
    return bytes.fromhex("0180c2000002") + src + b"\x88\x09" + payload


def guest_pdu(port: int, state: State, partner: tuple = (0, bytes(6), 0, 0, 0, 0),
              system: bytes = GUEST) -> bytes:  # fmt: skip
    src = GUEST[:5] + bytes([port])
    return eth(src, standard_pdu((0xFFFF, system, GUEST_KEY, 0xFF, port, int(state)), partner))


def test_encode_matches_the_standards_offsets():
    actor = PortInfo(0x8000, SWITCH, 0x0001, 0x0080, 0x0002, A | G | S)
    partner = PortInfo(0xFFFF, GUEST, GUEST_KEY, 0x00FF, 0x0001, A | T | G)
    got = lacp.encode(Lacpdu(actor, partner, collector_max_delay=5))
    assert len(got) == 110
    assert got == standard_pdu(
        (0x8000, SWITCH, 1, 0x80, 2, 0x0D), (0xFFFF, GUEST, GUEST_KEY, 0xFF, 1, 0x07), 5
    )
    framed = lacp.frame(SWITCH[:5] + b"\x02", Lacpdu(actor, partner))
    assert framed[:6] == bytes.fromhex("0180c2000002")  # Slow_Protocols_Multicast
    assert framed[6:12] == SWITCH[:5] + b"\x02" and framed[12:14] == b"\x88\x09"
    assert len(framed) == 124


def test_decode_reads_the_standards_offsets():
    data = guest_pdu(2, A | T | G | S | CD, (0x8000, SWITCH, 1, 0x8000, 2, 0x3D))
    pdu = lacp.decode(data)
    assert pdu is not None
    assert pdu.actor == PortInfo(0xFFFF, GUEST, GUEST_KEY, 0xFF, 2, A | T | G | S | CD)
    assert pdu.partner == PortInfo(0x8000, SWITCH, 1, 0x8000, 2, A | G | S | CD)
    assert lacp.decode(lacp.frame(SWITCH, pdu)) == pdu  # and back


@pytest.mark.parametrize("mangle", [
    lambda f: f[:123],  # one octet short
    lambda f: f[:14],  # the header alone
    lambda f: f[:12] + b"\x81\x00" + f[14:],  # not Slow Protocols
    lambda f: f[:14] + b"\x02" + f[15:],  # subtype 2: a Marker PDU
    lambda f: f[:15] + b"\x00" + f[16:],  # version 0
    lambda f: f[:16] + b"\x02" + f[17:],  # the actor TLV's type
    lambda f: f[:17] + b"\x13" + f[18:],  # the actor TLV's length
    lambda f: f[:37] + b"\x00" + f[38:],  # the partner TLV's length
    lambda f: f[:56] + b"\x04" + f[57:],  # the collector TLV's type
])  # fmt: skip
def test_malformed_frames_are_ignored(mangle):
    good = guest_pdu(1, A | T | G)
    assert lacp.decode(good) is not None
    bad = mangle(good)
    assert lacp.decode(bad) is None
    switch = Switch(2, SWITCH, now=0.0)
    switch.tick(0.0)
    events = len(switch.events)
    switch.receive(0, bad, 0.5)
    port = switch.ports[0]
    assert port.rx is Rx.DEFAULTED and port.lacpdus_in == 0 and len(switch.events) == events


def answers(out: list[tuple[int, bytes]], port: int) -> list[Lacpdu]:
    got = [lacp.decode(f) for i, f in out if i == port]
    assert all(p is not None for p in got)
    return [p for p in got if p is not None]


def test_a_guest_actor_lacpdu_gets_a_partner_answer():
    switch = Switch(2, SWITCH, now=0.0)
    first = switch.tick(0.0)  # an active switch speaks first, on every port
    assert sorted(i for i, _ in first) == [0, 1]
    (hello,) = answers(first, 0)
    assert hello.actor.state == A | G | State.DEFAULTED and hello.partner.system == bytes(6)
    # The bond's first LACPDU: it knows nothing of us yet.
    out = switch.receive(0, guest_pdu(1, A | T | G), 0.2)
    (answer,) = answers(out, 0)  # at once (NTT): the guest's view of us is stale
    assert answer.actor == PortInfo(0x8000, SWITCH, 1, 0x8000, 1, A | G)
    # The partner TLV echoes the guest's actor information (6.4.2.3: as last received).
    assert answer.partner == PortInfo(0xFFFF, GUEST, GUEST_KEY, 0xFF, 1, A | T | G)
    assert switch.ports[0].rx is Rx.CURRENT and switch.ports[0].mux is Mux.WAITING
    assert switch.ports[1].mux is Mux.DETACHED  # the other port heard nothing yet


def converge(switch: Switch, start: float = 0.0, system: bytes = GUEST) -> float:
    """Run a Linux-like bond on both ports until both links aggregate; the time it ended."""
    now, last = start, {0: None, 1: None}
    for step in range(200):
        now = start + step * 0.1
        out = switch.tick(now)
        for i in (0, 1):
            mine = answers(out, i)
            if mine:
                last[i] = mine[-1]
            seen = last[i]
            if seen is None:
                continue
            # The bond: in sync once the switch's actor information is its partner's, and
            # collecting/distributing once the switch says it is in sync.
            state = A | T | G
            if seen.partner.system == system and seen.partner.port == i + 1:
                state |= S
                if State.SYNCHRONIZATION in seen.actor.state:
                    state |= CD
            a = seen.actor
            partner = (a.system_priority, a.system, a.key, a.port_priority, a.port, int(a.state))
            for j, f in switch.receive(i, guest_pdu(i + 1, state, partner, system), now):
                if (p := lacp.decode(f)) is not None:
                    last[j] = p
        if all(p.aggregated() for p in switch.ports):
            return now
    raise AssertionError(f"no aggregate: {switch.events[-4:]}")


def test_both_ports_reach_collecting_distributing():
    switch = Switch(2, SWITCH, now=0.0)
    done = converge(switch)
    assert done >= lacp.AGGREGATE_WAIT  # the mux waited before attaching
    for port in switch.ports:
        assert port.mux is Mux.COLLECTING_DISTRIBUTING
        assert port.state == A | G | S | CD
    last = {e["port"]: e for e in switch.events}
    assert all(last[i]["aggregated"] for i in (0, 1))
    assert last[0]["guest"] == ["activity", "timeout", "aggregation", "synchronization",
                                "collecting", "distributing"]  # fmt: skip
    assert last[1]["guest_system"] == "52:54:00:77:00:01" and last[1]["guest_port"] == 2


def test_fast_rate_periodic_lacpdus_and_expiry():
    switch = Switch(2, SWITCH, now=0.0)
    done = converge(switch)
    # The guest asked for the fast rate: an LACPDU a second on each port, unprompted.
    sent = [i for t in range(1, 6) for i, _ in switch.tick(done + t)]
    assert sorted(sent) == [0] * 5 + [1] * 5
    # The guest stops (its kernel panicked): long timeout (ours), then expired, defaulted.
    switch.tick(done + lacp.LONG_TIMEOUT + 1)
    assert switch.ports[0].rx is Rx.EXPIRED and State.EXPIRED in switch.ports[0].state
    assert switch.ports[0].mux is Mux.ATTACHED  # the partner is out of sync: no C+D
    switch.tick(done + lacp.LONG_TIMEOUT + 1 + lacp.SHORT_TIMEOUT)
    assert switch.ports[0].rx is Rx.DEFAULTED and switch.ports[0].mux is Mux.DETACHED
    assert not any(e["aggregated"] for e in switch.events[-2:])


def test_a_restarted_bond_aggregates_again():
    """The capture kernel's bond starts from nothing while the switch still holds the
    first kernel's partner: it leaves collecting/distributing, then returns."""
    switch = Switch(2, SWITCH, now=0.0)
    done = converge(switch)
    mark = len(switch.events)
    switch.receive(0, guest_pdu(1, A | T | G), done + 40)  # a fresh bond: no partner yet
    assert switch.ports[0].mux is Mux.ATTACHED and not switch.ports[0].aggregated()
    converge(switch, done + 40)
    later = switch.events[mark:]
    assert [e["aggregated"] for e in later if e["port"] == 0][-1]
    assert any(not e["aggregated"] for e in later if e["port"] == 0)


def test_a_bond_with_another_system_takes_the_aggregator_over():
    """As in the lab: the first kernel's bond had udev's persistent MAC, the capture
    kernel's has its first NIC's.  Each port detaches from the old aggregation before it
    joins the new one (never attached to two partners at once)."""
    switch = Switch(2, SWITCH, now=0.0)
    done = converge(switch)
    other = bytes.fromhex("525400770099")
    mark = len(switch.events)
    switch.receive(0, guest_pdu(1, A | G, system=other), done + 30)
    # Port 1 still holds the old aggregation: port 0 may not join a new one yet.
    assert switch.ports[0].mux is Mux.DETACHED and not switch.ports[0].selected
    assert switch.ports[1].aggregated()
    switch.receive(1, guest_pdu(2, A | G, system=other), done + 30.5)
    assert all(p.mux is Mux.WAITING for p in switch.ports)  # both detached, then selected
    converge(switch, done + 31, system=other)
    for port in (0, 1):
        mine = [e for e in switch.events[mark:] if e["port"] == port]
        assert "waiting" in [e["mux"] for e in mine]  # entered from DETACHED only
        assert mine[-1]["aggregated"] and mine[-1]["guest_system"] == "52:54:00:77:00:99"


def test_data_frames_one_port_per_flow():
    switch = Switch(2, SWITCH, now=0.0)
    tcp = bytes.fromhex("5254007700010200007700ff0800") + bytes([0x45, 0]) + bytes(7)
    tcp += bytes([6]) + bytes(2) + bytes([192, 168, 77, 1, 192, 168, 77, 2])

    def flow(sport: int) -> bytes:
        return tcp + struct.pack(">HH", sport, 22) + bytes(16)

    assert switch.egress(flow(1000)) == [0, 1]  # no aggregate: every port (a hub)
    assert switch.accepts(0) and switch.accepts(1)
    done = converge(switch)
    ports = {tuple(switch.egress(flow(p))) for p in range(1000, 1064)}
    assert ports == {(0,), (1,)}  # one port per frame; flows spread over both
    assert switch.egress(flow(1000)) == switch.egress(flow(1000))  # a flow keeps its port
    assert switch.accepts(0) and switch.accepts(1)
    switch.receive(1, guest_pdu(2, A | T | G), done + 5)  # port 1's bond restarts
    assert switch.egress(flow(1001)) == [0] and not switch.accepts(1)
