"""The capture side saving a real dump to a real OpenSSH sshd on the loopback.

The ssh client is OpenSSH's, with the options the capture kernel uses; only the
address differs (127.0.0.1 on a spare port instead of the network).  The flattened
file that arrives is rearranged by makedumpfile -R, the reference tool.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kdumpy.lab.servers import Sshd

from .helpers import run_capture


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


def _conf(tmp_path: Path, sshd: Sshd, crash: Path) -> Path:
    conf = tmp_path / "kdump.conf"
    conf.write_text(
        f"ssh root@127.0.0.1\nsshkey {sshd.client_key}\npath {crash}\n"
        "core_collector makedumpfile -l --message-level 7 -d 31\n"
        "failure_action poweroff\nfinal_action halt\n"
    )
    return conf


def _client(tmp_path: Path, sshd: Sshd, known_hosts_line: str) -> list[str]:
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line)
    config = tmp_path / "ssh_config"
    config.write_text(sshd.client_config("127.0.0.1"))
    return ["--ssh-config", str(config), "--known-hosts", str(known)]


def test_save_over_ssh(tmp_path, dump_61, sshd, makedumpfile):
    crash = tmp_path / "server" / "crash"
    crash.mkdir(parents=True)
    conf = _conf(tmp_path, sshd, crash)
    args = _client(tmp_path, sshd, sshd.known_hosts_line("127.0.0.1"))
    run = run_capture(conf, dump_61.vmcore, *args)
    assert run.returncode == 0, run.stderr
    assert "kdump: would halt" in run.stderr
    (dump_dir,) = list(crash.iterdir())
    assert dump_dir.name.startswith("127.0.0.1-")
    assert sorted(p.name for p in dump_dir.iterdir()) == [
        "kexec-dmesg.log", "vmcore-dmesg.txt", "vmcore.flat",
    ]  # fmt: skip
    for path in dump_dir.iterdir():
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    out = tmp_path / "vmcore"
    with open(dump_dir / "vmcore.flat", "rb") as src:
        subprocess.run([makedumpfile, "-R", str(out)], stdin=src, check=True,
                       capture_output=True)  # fmt: skip
    log = tmp_path / "dmesg"
    subprocess.run([makedumpfile, "--dump-dmesg", str(out), str(log)], check=True,
                   capture_output=True)  # fmt: skip
    assert "sysrq: Trigger a crash" in log.read_text()
    assert "sysrq: Trigger a crash" in (dump_dir / "vmcore-dmesg.txt").read_text()
    from kdumpy.vmcore import open_dump

    with open_dump(dump_dir / "vmcore.flat") as dump:
        assert dump.vmcoreinfo.osrelease == dump_61.kernel.release


def test_wrong_host_key_is_refused(tmp_path, dump_61, sshd):
    """known_hosts names another key for this server: no connection, no retry, no file."""
    crash = tmp_path / "server" / "crash"
    crash.mkdir(parents=True)
    conf = _conf(tmp_path, sshd, crash)
    impostor = Sshd(tmp_path / "other")  # never started: only its host key is used
    wrong = impostor.known_hosts_line("127.0.0.1").replace(f":{impostor.port} ", f":{sshd.port} ")
    run = run_capture(conf, dump_61.vmcore, *_client(tmp_path, sshd, wrong))
    assert run.returncode == 1
    assert "refusing ssh root@127.0.0.1: its host key does not match" in run.stderr
    assert "not reachable" not in run.stderr  # refused at once, not retried
    assert "kdump: would poweroff" in run.stderr
    assert list(crash.iterdir()) == []


def test_unknown_host_is_refused(tmp_path, dump_61, sshd):
    """No known_hosts entry at all: StrictHostKeyChecking=yes never trusts on first use."""
    crash = tmp_path / "server" / "crash"
    crash.mkdir(parents=True)
    conf = _conf(tmp_path, sshd, crash)
    run = run_capture(conf, dump_61.vmcore, *_client(tmp_path, sshd, ""))
    assert run.returncode == 1
    assert "refusing ssh root@127.0.0.1" in run.stderr
    assert list(crash.iterdir()) == []


def test_unreachable_server_bounded_retries(tmp_path, dump_61, sshd, monkeypatch):
    """Nothing listens: a bounded number of tries, then failure_action."""
    from kdumpy.capture.actions import Actions
    from kdumpy.capture.flow import CaptureOptions
    from kdumpy.capture.flow import run_capture as flow
    from kdumpy.capture.log import CaptureLog
    from kdumpy.capture.targets import ssh

    monkeypatch.setattr(ssh, "SSH_TRIES", 3)
    monkeypatch.setattr(ssh, "SSH_DELAY", 0.2)
    crash = tmp_path / "crash"
    conf = _conf(tmp_path, sshd, crash)
    args = _client(tmp_path, sshd, sshd.known_hosts_line("127.0.0.1"))
    sshd.stop()
    log = CaptureLog(open(os.devnull, "w"))  # noqa: SIM115
    actions = Actions(log, dry_run=True)
    opts = CaptureOptions(config=str(conf), vmcore=str(dump_61.vmcore), cmdline="",
                          ssh_config=args[1], known_hosts=args[3])  # fmt: skip
    result = flow(opts, log, actions)
    assert not result.ok
    text = log.text()
    assert text.count("not reachable") == 3
    assert "unreachable after 3 tries" in result.error
    assert actions.performed == ["poweroff"]
