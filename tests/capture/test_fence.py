"""fence_kdump messages from the capture side, received by a real UDP listener on loopback.

The expected datagram comes from fence-agents (agents/kdump/message.h): a packed struct of
two uint32 in host byte order, FENCE_KDUMP_MAGIC 0x1B302A40 and FENCE_KDUMP_MSGV1 1; port
7410 unless -p says otherwise (options.h); the agent compares both fields as it reads them.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from kdumpy.capture.fence import notify
from kdumpy.capture.log import CaptureLog
from kdumpy.service.config import parse_config

from .helpers import run_capture


def _listener(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(10)
    return sock


def _fence_agent_reads(data: bytes) -> tuple[int, int]:
    """What fence_kdump's receiver checks: magic and version, native order, 8 bytes."""
    assert len(data) == 8
    return struct.unpack("=II", data)


def test_messages_count_and_interval() -> None:
    """-c 2 -i 1: two messages, about a second apart, then the sender stops."""
    with _listener() as sock:
        port = sock.getsockname()[1]
        cfg = parse_config(f"fence_kdump_nodes 127.0.0.1\nfence_kdump_args -p {port} -c 2 -i 1\n")
        stop = threading.Event()
        sender = threading.Thread(
            target=notify, args=(cfg.fence_kdump_nodes, cfg.fence, CaptureLog(), stop)
        )
        sender.start()
        first = sock.recvfrom(64)
        t0 = time.monotonic()
        second = sock.recvfrom(64)
        gap = time.monotonic() - t0
        sender.join(5)
        assert not sender.is_alive()
        assert _fence_agent_reads(first[0]) == (0x1B302A40, 1)
        assert _fence_agent_reads(second[0]) == (0x1B302A40, 1)
        assert 0.8 < gap < 5
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recvfrom(64)


def test_ipv6_family_and_every_node() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        six = _listener(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with six, _listener() as four:
        p6, p4 = six.getsockname()[1], four.getsockname()[1]
        # One port for every node, as fence_kdump_send: bind the v4 listener's port on ::1 too.
        cfg = parse_config(f"fence_kdump_nodes ::1\nfence_kdump_args -f ipv6 -p {p6} -c 1\n")
        notify(cfg.fence_kdump_nodes, cfg.fence, CaptureLog(), threading.Event())
        assert _fence_agent_reads(six.recvfrom(64)[0]) == (0x1B302A40, 1)
        cfg = parse_config(
            f"fence_kdump_nodes 127.0.0.1 localhost\nfence_kdump_args -f ipv4 -p {p4} -c 1\n"
        )
        notify(cfg.fence_kdump_nodes, cfg.fence, CaptureLog(), threading.Event())
        assert [_fence_agent_reads(four.recvfrom(64)[0]) for _ in range(2)] == [(0x1B302A40, 1)] * 2


def test_unresolvable_node_is_logged_once() -> None:
    import io

    stream = io.StringIO()
    cfg = parse_config("fence_kdump_nodes no-such-node.invalid\nfence_kdump_args -c 2 -i 1\n")
    notify(cfg.fence_kdump_nodes, cfg.fence, CaptureLog(stream), threading.Event())
    assert stream.getvalue().count("fence_kdump: cannot send to no-such-node.invalid") == 1


def test_capture_run_notifies_before_the_dump(tmp_path: Path) -> None:
    """kdump.sh sends before anything else: even a dump that fails got the cluster told."""
    with _listener() as sock:
        port = sock.getsockname()[1]
        conf = tmp_path / "kdump.conf"
        conf.write_text(
            "ext4 /dev/vdb\nfailure_action poweroff\n"
            f"fence_kdump_nodes 127.0.0.1\nfence_kdump_args -p {port} -c 1\n"
        )
        target = tmp_path / "t"
        target.mkdir()
        run = run_capture(conf, tmp_path / "no-vmcore", "--target-dir", str(target))
        assert _fence_agent_reads(sock.recvfrom(64)[0]) == (0x1B302A40, 1)
    assert "fence_kdump: notifying 127.0.0.1" in run.stderr
    assert "would poweroff" in run.stderr
    assert "Traceback" not in run.stderr
