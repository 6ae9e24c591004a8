"""propagate's server naming and the kexec-tools fallback's arguments (no VM).

The end-to-end proof (a real sshd, a real guest) is tests/e2e/test_commands.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdumpy.errors import KdumpyError
from kdumpy.service import kexec, propagate
from kdumpy.service.config import parse_config


def test_known_hosts_name_carries_a_non_default_port() -> None:
    assert propagate.SshServer("10.0.2.2").known_name == "10.0.2.2"
    assert propagate.SshServer("10.0.2.2", 2222).known_name == "[10.0.2.2]:2222"


def test_resolve_reads_ssh_g() -> None:
    server = propagate.resolve("root@192.0.2.9")  # ssh -G: no network involved
    assert server.host == "192.0.2.9"
    assert server.port > 0


def test_start_check_needs_the_key(tmp_path: Path) -> None:
    config = parse_config(
        f"ssh root@192.0.2.9\nsshkey {tmp_path / 'absent'}\n", str(tmp_path / "kdump.conf")
    )
    with pytest.raises(KdumpyError, match=r"absent: no such ssh key; run kdumpy propagate"):
        propagate.check_target(config, print, timeout=0)


def test_fallback_forces_kexec_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in kexec records its arguments: the real one would load a kernel on this
    machine.  KEXEC_ARGS' -s (RHEL's default) must not send it back to the file load."""
    record = tmp_path / "argv"
    fake = tmp_path / "kexec"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    kexec.tools_load(Path("/boot/vmlinuz"), Path("/x/initrd"), "a b=c", ["-s", "--debug"])
    argv = record.read_text().splitlines()
    assert argv == ["-p", "-c", "--debug", "--command-line=a b=c", "--initrd=/x/initrd",
                    "/boot/vmlinuz"]  # fmt: skip
