"""propagate's server naming, the start-time ssh check against a loopback sshd, and the
kexec-tools fallback's arguments (no VM).

The end-to-end proof (a real sshd, a real guest) is tests/e2e/test_commands.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from unprivileged import isolated, overlay

from kdumpy.errors import KdumpyError
from kdumpy.lab.servers import Sshd
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


# Runs in a private mount namespace whose /root and /etc/ssh are overlays: the start-time
# check (kdumpy start) and the capture kernel's ssh, each with its defaults.
AGREE_SCRIPT = """
import sys
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.targets.ssh import SshServer
from kdumpy.errors import KdumpyError
from kdumpy.service.config import parse_config
from kdumpy.service.propagate import check_target

conf, key = sys.argv[1], sys.argv[2]
try:
    check_target(parse_config(open(conf).read(), conf), print, timeout=0)
    print("start: accepted")
except KdumpyError as exc:
    print(f"start: refused: {exc}")
try:
    SshServer(CaptureLog(open("/dev/null", "w")), "root", "127.0.0.1", key)._remote("true")
    print("capture: accepted")
except KdumpyError as exc:
    print(f"capture: refused: {exc}")
"""


@pytest.mark.parametrize("where", ["/etc/ssh/ssh_known_hosts", "/root/.ssh/known_hosts"])
def test_start_check_trusts_what_the_capture_trusts(tmp_path: Path, where: str) -> None:
    """Finding 16: the server's host key only in the global known_hosts (which the capture
    initramfs does not carry) passed ``kdumpy start`` and was refused at crash time.  Both
    must now give the same answer; with the key in root's known_hosts both accept."""
    with Sshd(tmp_path / "sshd") as sshd:
        root_ssh = tmp_path / "root" / "upper" / ".ssh"
        root_ssh.mkdir(parents=True, mode=0o700)
        (root_ssh / "config").write_text(sshd.client_config("127.0.0.1"))
        known = (
            root_ssh / "known_hosts"
            if where.startswith("/root")
            else (tmp_path / "etc-ssh" / "upper" / "ssh_known_hosts")
        )
        known.parent.mkdir(parents=True, exist_ok=True)
        known.write_text(sshd.known_hosts_line("127.0.0.1"))
        conf = tmp_path / "kdump.conf"
        conf.write_text(f"ssh root@127.0.0.1\nsshkey {sshd.client_key}\npath {tmp_path}/crash\n")
        script = tmp_path / "agree.py"
        script.write_text(AGREE_SCRIPT)
        setup = [overlay("/root", tmp_path / "root"), overlay("/etc/ssh", tmp_path / "etc-ssh")]
        argv = [sys.executable, str(script), str(conf), str(sshd.client_key)]
        proc = isolated("\n".join(setup), argv, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    if where.startswith("/etc"):
        assert lines["capture"].startswith("refused: refusing ssh root@127.0.0.1")
        assert lines["start"].startswith("refused: root@127.0.0.1: Host key verification failed")
        assert not (tmp_path / "crash").exists()
    else:
        assert lines == {"start": "accepted", "capture": "accepted"}
        assert (tmp_path / "crash").is_dir()
