"""ssh and NFS targets, end to end: real OpenSSH sshd and nfs-ganesha on the host's
loopback (spare ports), reached by the guest through QEMU's user network as 10.0.2.2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.servers import GUEST_HOST_IP, GaneshaNfs, Sshd

from .helpers import DIR_NAME, check_dmesg_file, check_dump, collector_for, first_kernel_serial

COLLECTOR = "core_collector makedumpfile -l --message-level 7 -d 31\n"


def ssh_files(sshd: Sshd, known_hosts: str) -> dict[str, bytes | str]:
    """The guest's /root/.ssh: the key kdumpy uses, known_hosts, the port in ssh_config."""
    return {
        "ssh/kdump_id_rsa": Path(sshd.client_key).read_bytes(),
        "ssh/known_hosts": known_hosts,
        "ssh/config": sshd.client_config(GUEST_HOST_IP),
    }


def ssh_conf(crash_dir: Path, extra: str = "", collector: str = COLLECTOR) -> str:
    """kdump.conf for the test server; extra_bins carries /root/.ssh/config (the port)
    into the capture initramfs, where ssh reads it."""
    return (f"ssh root@{GUEST_HOST_IP}\npath {crash_dir}\n" + collector +
            "extra_bins /root/.ssh/config\n"
            "final_action poweroff\nfailure_action poweroff\n" + extra)  # fmt: skip


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


def test_ssh(tmp_path, kernel, sshd):
    """kdumpy's default collector streaming a flattened dump (kdumpy collect -F) over ssh;
    makedumpfile -R, an independent reader, turns it back into a dump file."""
    crash = tmp_path / "server-crash"
    crash.mkdir()
    files = ssh_files(sshd, sshd.known_hosts_line(GUEST_HOST_IP))
    conf = ssh_conf(crash, collector="")
    result = run_cycle(Cycle(conf, files=files), tmp_path / "run", kernel)
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in result.serial, result.serial[-3000:]
    (dump_dir,) = [p for p in crash.iterdir() if p.is_dir()]
    match = DIR_NAME.fullmatch(dump_dir.name)
    assert match and match.group(1) == "10.0.2.15", dump_dir.name
    names = sorted(p.name for p in dump_dir.iterdir())
    assert names == ["kexec-dmesg.log", "vmcore-dmesg.txt", "vmcore.flat"]
    assert oct(dump_dir.joinpath("vmcore.flat").stat().st_mode & 0o777) == "0o600"
    first = first_kernel_serial(result.serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    out = tmp_path / "vmcore"
    with open(dump_dir / "vmcore.flat", "rb") as src:
        subprocess.run(["makedumpfile", "-R", str(out)], stdin=src, check=True,
                       capture_output=True)  # fmt: skip
    check_dump(out, kernel, first)


NFS_FORMS = {
    # kdump.conf's own directive: NFSv4 on the well-known port, kdumpy's default collector.
    "directive": (2049, lambda nfs: f"nfs {GUEST_HOST_IP}:/export\npath /crash\n"),
    # RHEL's way to pass mount options: a server on a spare port, makedumpfile as collector
    # where the guest's makedumpfile can filter the kernel (test_nfs adds the line).
    "dracut_args": (
        None,
        lambda nfs: (
            f'dracut_args --mount "{GUEST_HOST_IP}:/export /kdumproot nfs {nfs.mount_options()}"\n'
            "path /crash\n"
        ),
    ),
}


@pytest.fixture(params=sorted(NFS_FORMS))
def nfs(request, tmp_path):
    port, conf = NFS_FORMS[request.param]
    server = GaneshaNfs(tmp_path / "nfs", port=port).start()
    yield server, conf(server)
    server.stop()


def test_nfs(tmp_path, kernel, nfs):
    nfs, conf = nfs
    if "dracut_args" in conf:
        conf += collector_for(kernel)
    conf += "final_action poweroff\n"
    (nfs.export / "crash").mkdir()
    result = run_cycle(Cycle(conf), tmp_path / "run", kernel)
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in result.serial, result.serial[-3000:]
    (dump_dir,) = list((nfs.export / "crash").iterdir())
    match = DIR_NAME.fullmatch(dump_dir.name)
    assert match and match.group(1) == "10.0.2.15", dump_dir.name
    names = sorted(p.name for p in dump_dir.iterdir())
    assert names == ["kexec-dmesg.log", "vmcore", "vmcore-dmesg.txt"]
    first = first_kernel_serial(result.serial)
    check_dmesg_file(dump_dir.joinpath("vmcore-dmesg.txt").read_text(), first)
    check_dump(dump_dir / "vmcore", kernel, first)
