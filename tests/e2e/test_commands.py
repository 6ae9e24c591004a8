"""The service commands on the lab's Debian guest: propagate, start/stop/status, the
kexec-tools fallback, ``kdumpy test`` and the next boot's report, and reserve.

Two boots of one guest (its root overlay carried from the first to the second), so
about three kernel boots in all (first kernel, capture kernel, first kernel again):

1. ``status`` before anything is loaded; ``propagate`` against the host's real OpenSSH
   sshd (a wrong host key, an unknown one with nobody to ask, the right one, again);
   ``start`` with a config error, then fixed; ``status``/``stop``; ``start``/``stop`` with
   kexec_file_load failing with ENOSYS (a seccomp filter, ``guest/no_kexec_file_load.py``),
   so kdumpy falls back to kexec-tools' kexec_load; ``kdumpy test`` refused without a
   terminal and answered "n", then answered "y" on a pseudo-terminal (``script``) under
   the same filter: the capture kernel that kexec-tools loaded saves the test dump over
   ssh, logging in with the key propagate installed.
2. The next boot: ``status`` and ``start`` fetch the test's status file from the ssh
   server and report it; ``reserve`` edits /etc/default/grub and runs the real
   update-grub.  The guest boots with QEMU ``-kernel``, so the regenerated
   /boot/grub/grub.cfg is checked as a file (read from the guest's disk on the host with
   debugfs), not booted.

The first copy of the key authenticates with the administrator's own ssh key
(``/root/.ssh/id_ed25519``, already accepted by the server), as ``ssh-copy-id`` does with
whatever key or agent the admin has; the test server has no password login.  The server
runs with its session home in the test's directory (``Sshd(home=True)``), so the key
lands in a real ``~/.ssh/authorized_keys`` without touching the host's own.

Oracles on the host side: the server's authorized_keys file and its log (which key logged
in at capture time), the dump files on the server (makedumpfile -R reads the flattened
stream), /sys/kernel/kexec_crash_loaded read in the guest after each command, and
grub.cfg read from the guest's disk image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import kdumpy
from kdumpy.arch.x86_64.kdump import X86_64_KDUMP
from kdumpy.lab.debian_job import Job, JobResult, run_job
from kdumpy.lab.kernels import LabKernel, get_kernel
from kdumpy.lab.servers import GUEST_HOST_IP, Sshd, keygen

from .conftest import E2E_KERNELS

HERE = Path(__file__).parent
COLLECTOR = "core_collector makedumpfile -l --message-level 7 -d 31\n"
MARKERS = ("KDUMPY-JOB-BEGIN", "KDUMPY-JOB-END", "KDUMPY-TEST-CRASH", "Kernel panic",
           "kdump: saved vmcore to")  # fmt: skip

COMMON = """run() { name=$1; shift; "$@" > out/$name.txt 2>&1; echo $? > out/$name.rc; }
loaded() { cat /sys/kernel/kexec_crash_loaded > out/$1.loaded; }
"""

FIRST_BOOT = (
    COMMON
    + """cp kdump.conf /etc/kdump.conf
mkdir -p /root/.ssh && chmod 700 /root/.ssh
cp ssh/config ssh/id_ed25519 /root/.ssh/ && chmod 600 /root/.ssh/*
[ -e /root/.ssh/kdump_id_rsa ] || echo yes > out/key-was-absent
run status0 kdumpy status; loaded status0

# propagate: the known_hosts entry is another server's key
cp ssh/known_hosts.wrong /root/.ssh/known_hosts
run propagate-wrong kdumpy propagate
run probe-wrong ssh -i /root/.ssh/kdump_id_rsa -o IdentitiesOnly=yes -o BatchMode=yes \\
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@10.0.2.2 true
# no entry at all, and no terminal to ask
rm /root/.ssh/known_hosts
run propagate-unasked kdumpy propagate < /dev/null
# the fingerprint checked by the admin; start refuses the key the server does not know yet
cp ssh/known_hosts.good /root/.ssh/known_hosts
run start-unpropagated kdumpy start; loaded start-unpropagated
run propagate kdumpy propagate
run propagate-again kdumpy propagate
cp /root/.ssh/kdump_id_rsa.pub out/
rm /root/.ssh/id_ed25519   # from here on, only the dump key can log in

# a config error stops start before anything is built or loaded
echo "bogus_directive 1" >> /etc/kdump.conf
run start-bad kdumpy start; loaded start-bad
cp kdump.conf /etc/kdump.conf
run start kdumpy start; loaded start
run status1 kdumpy status
run stop kdumpy stop; loaded stop
run status2 kdumpy status

# kexec_file_load unavailable (ENOSYS): kexec-tools' kexec_load instead
run start-fallback python3 no_kexec_file_load.py kdumpy start; loaded start-fallback
run stop-fallback python3 no_kexec_file_load.py kdumpy stop; loaded stop-fallback
run start-fallback2 python3 no_kexec_file_load.py kdumpy start; loaded start-fallback2

run test-notty kdumpy test < /dev/null
printf 'n\\n' | script -qec 'kdumpy test' /dev/null > out/test-no.txt 2>&1
echo $? > out/test-no.rc
sync
echo KDUMPY-TEST-CRASH
printf 'y\\n' | script -qec 'python3 no_kexec_file_load.py kdumpy test' /dev/null
echo "kdumpy test returned $?"
"""
)

# /etc/default/grub comes from grub's template, as grub-pc's postinst installs it; the
# /boot/grub directory is what grub-install would have made.
NEXT_BOOT = (
    COMMON
    + """run status kdumpy status
run start kdumpy start
cp /var/lib/kdumpy/vmcore-creation.status out/teststatus
cp /usr/share/grub/default/grub /etc/default/grub
mkdir -p /boot/grub
[ -e /boot/grub/grub.cfg ] && echo yes > out/grub-cfg-existed
sha256sum /etc/default/grub > out/grub-before.sha
run reserve-notty kdumpy reserve < /dev/null
sha256sum /etc/default/grub > out/grub-notty.sha
run reserve kdumpy reserve --yes
sync
"""
)


@dataclass
class Session:
    kernel: LabKernel
    sshd: Sshd
    crash_dir: Path
    first: JobResult
    next: JobResult
    sshd_log_first: str  # the server's log as it was after the first boot's run
    root_image: Path  # the guest's root after both runs, as a raw image

    def out(self, boot: JobResult, name: str) -> str:
        path = boot.out / name
        return path.read_text(errors="replace") if path.exists() else ""

    def rc(self, boot: JobResult, name: str) -> int:
        return int(self.out(boot, f"{name}.rc"))

    def loaded(self, name: str) -> str:
        return self.out(self.first, f"{name}.loaded").strip()


def kdump_conf(crash_dir: Path) -> str:
    return (f"ssh root@{GUEST_HOST_IP}\npath {crash_dir}\n" + COLLECTOR +
            "final_action poweroff\nfailure_action poweroff\n")  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[pytest.param(k, marks=[pytest.mark.vm, pytest.mark.slow]) for k in E2E_KERNELS],
)
def session(request, tmp_path_factory):
    kernel = get_kernel(request.param)
    work = tmp_path_factory.mktemp("commands")
    sshd = Sshd(work / "sshd", home=True).start()
    try:
        impostor = keygen(work / "impostor_host_key")
        good = sshd.known_hosts_line(GUEST_HOST_IP)
        wrong = good.split()[0] + " " + Path(f"{impostor}.pub").read_text().split()[0] + " "
        wrong += Path(f"{impostor}.pub").read_text().split()[1] + "\n"
        crash_dir = work / "server-crash"
        crash_dir.mkdir()
        conf = kdump_conf(crash_dir)
        files: dict[str, bytes | str] = {
            "kdump.conf": conf,
            "ssh/config": sshd.client_config(GUEST_HOST_IP),
            "ssh/id_ed25519": Path(sshd.client_key).read_bytes(),  # the admin's own key
            "ssh/known_hosts.good": good,
            "ssh/known_hosts.wrong": wrong,
            "no_kexec_file_load.py": (HERE / "guest" / "no_kexec_file_load.py").read_text(),
        }
        root = work / "root.qcow2"
        # Both boots install this snapshot: a code change between them (the working tree
        # may move meanwhile) would make the next start rebuild, which clears the result.
        tree = work / "kdumpy"
        shutil.copytree(Path(kdumpy.__file__).parent, tree,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        first = run_job(
            Job(FIRST_BOOT, files=files, crashkernel="256M", timeout=1500, root_overlay=root,
                markers=MARKERS, kdumpy_tree=tree),
            work / "first", kernel,
        )  # fmt: skip
        log_first = (sshd.dir / "sshd.log").read_text(errors="replace")
        nxt = run_job(
            Job(NEXT_BOOT, crashkernel="256M", timeout=900, root_overlay=root, kdumpy_tree=tree),
            work / "next", kernel,
        )  # fmt: skip
    finally:
        sshd.stop()
    raw = work / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(root), str(raw)], check=True)
    yield Session(kernel, sshd, crash_dir, first, nxt, log_first, raw)
    raw.unlink()  # the rest stays for a look (pytest keeps the last few base directories)


def _guest_file(image: Path, path: str) -> str:
    proc = subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout


def _fingerprint(public_key: str) -> str:
    proc = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=public_key, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout.split()[1]  # SHA256:...


def test_status_stop_start_exit_codes(session):
    s, first = session, session.first
    assert s.rc(first, "status0") == 3 and s.loaded("status0") == "0"
    assert "Kdump is not operational" in s.out(first, "status0.txt")
    # The config error: one line naming the file and line, at start, nothing loaded.
    conf_lines = kdump_conf(s.crash_dir).count("\n")
    bad = s.out(first, "start-bad.txt")
    assert s.rc(first, "start-bad") == 1, bad
    assert f"/etc/kdump.conf:{conf_lines + 1}:" in bad and "bogus_directive" in bad
    assert "Starting kdump: [FAILED]" in bad and "Traceback" not in bad
    assert s.loaded("start-bad") == "0"
    start = s.out(first, "start.txt")
    assert s.rc(first, "start") == 0, start
    assert "kexec: loaded kdump kernel (kexec_file_load)" in start
    assert s.loaded("start") == "1"
    assert s.rc(first, "status1") == 0
    assert "Kdump is operational" in s.out(first, "status1.txt")
    assert s.rc(first, "stop") == 0 and s.loaded("stop") == "0"
    assert "Stopping kdump: [OK]" in s.out(first, "stop.txt")
    assert s.rc(first, "status2") == 3


def test_kexec_tools_fallback(session):
    """kexec_file_load failing with ENOSYS (seccomp; the guest kernel has it, so it is
    blocked for the command only): start loads through kexec-tools, stop unloads through
    kexec_load.  With the file load refused, a loaded crash kernel can only come from
    kexec_load; the test crash below uses the kernel loaded this way."""
    s, first = session, session.first
    text = s.out(first, "start-fallback.txt")
    assert "kexec_file_load fails with ENOSYS" in text
    assert s.rc(first, "start-fallback") == 0, text
    assert "kexec: loaded kdump kernel (kexec -p)" in text
    assert s.loaded("start-fallback") == "1"
    assert s.rc(first, "stop-fallback") == 0, s.out(first, "stop-fallback.txt")
    assert s.loaded("stop-fallback") == "0"
    assert s.loaded("start-fallback2") == "1"
    assert "kexec: loaded kdump kernel (kexec -p)" in first.serial  # kdumpy test's reload


def test_propagate(session):
    s, first = session, session.first
    assert s.out(first, "key-was-absent").strip() == "yes"
    wrong = s.out(first, "propagate-wrong.txt").strip()
    assert s.rc(first, "propagate-wrong") == 1
    assert len(wrong.splitlines()) == 2, wrong  # "Generated new ssh key", then the error
    assert "host key does not match" in wrong
    # The key was not sent: the server refuses it (checked without host key checking).
    assert s.rc(first, "probe-wrong") == 255
    assert "Permission denied" in s.out(first, "probe-wrong.txt")
    unasked = s.out(first, "propagate-unasked.txt")
    assert s.rc(first, "propagate-unasked") == 1 and "host key not accepted" in unasked
    # start checks the login first, as kdumpctl does: the unknown key fails at start.
    early = s.out(first, "start-unpropagated.txt")
    assert s.rc(first, "start-unpropagated") == 1, early
    assert early.splitlines()[0] == (
        "kdump: root@10.0.2.2: Permission denied (publickey) (key /root/.ssh/kdump_id_rsa); "
        "run kdumpy propagate"
    )
    assert s.loaded("start-unpropagated") == "0"
    done = s.out(first, "propagate.txt")
    assert s.rc(first, "propagate") == 0, done
    assert "has been added to ~root/.ssh/authorized_keys" in done
    assert "is already installed" in s.out(first, "propagate-again.txt")
    # The server side, read independently: the key is in authorized_keys, once.
    public = s.out(first, "kdump_id_rsa.pub")
    assert public.startswith("ssh-rsa ")
    lines = s.sshd.authorized_keys.read_text().splitlines()
    assert lines.count(public.strip()) == 1
    # The capture kernel logged in with that key (the last login of the first boot).
    accepted = re.findall(r"Accepted publickey for root from .* ssh2: (\S+) (\S+)",
                          s.sshd_log_first)  # fmt: skip
    assert accepted and accepted[-1] == ("RSA", _fingerprint(public))


def test_kdumpy_test_and_next_boot(session):
    s, first, nxt = session, session.first, session.next
    assert s.rc(first, "test-notty") == 1 and "Not crashing." in s.out(first, "test-notty.txt")
    assert s.rc(first, "test-no") == 1 and "Not crashing." in s.out(first, "test-no.txt")
    serial = first.serial
    assert "Test " in serial and "armed; crashing the system now" in serial, serial[-3000:]
    assert "kdumpy test returned" not in serial  # it crashed
    assert "kdump: saved vmcore to" in serial, serial[-3000:]
    (test_dir,) = [p for p in s.crash_dir.iterdir() if p.name.startswith("kdump-test-")]
    test_id = test_dir.name.removeprefix("kdump-test-")
    assert (test_dir / "vmcore-creation.status").read_text().strip() == "success"
    flat = test_dir / "vmcore.flat"
    assert oct(flat.stat().st_mode & 0o777) == "0o600"
    out = s.crash_dir.parent / "vmcore"
    with open(flat, "rb") as src:
        subprocess.run(["makedumpfile", "-R", str(out)], stdin=src, check=True,
                       capture_output=True)  # fmt: skip
    from kdumpy.vmcore import open_dump

    with open_dump(out) as dump:
        assert dump.vmcoreinfo.osrelease == s.kernel.release
    # The next boot: status (nothing loaded yet: exit 3) and start report the result.
    status = s.out(nxt, "status.txt")
    assert s.rc(nxt, "status") == 3, status
    assert "Notice: Last successful vmcore creation test on" in status
    start = s.out(nxt, "start.txt")
    assert s.rc(nxt, "start") == 0, start
    assert "Notice: Last successful vmcore creation test on" in start
    state = s.out(nxt, "teststatus").split()
    assert state[0] == "success" and f"kdump_test_id={test_id}" in state


def test_reserve_with_update_grub(session):
    """reserve's diff, its refusal without a terminal, then --yes: /etc/default/grub and
    the grub.cfg that the guest's update-grub wrote, read from the guest's disk.  The guest
    boots with QEMU -kernel, so grub.cfg is checked as a file, not booted."""
    s, nxt = session, session.next
    assert s.out(nxt, "grub-cfg-existed") == ""
    assert s.rc(nxt, "reserve-notty") == 1
    assert "Nothing changed." in s.out(nxt, "reserve-notty.txt")
    assert s.out(nxt, "grub-notty.sha") == s.out(nxt, "grub-before.sha")
    text = s.out(nxt, "reserve.txt")
    assert s.rc(nxt, "reserve") == 0, text
    assert f'+GRUB_CMDLINE_LINUX="crashkernel={X86_64_KDUMP.crashkernel_table}"' in text
    assert '-GRUB_CMDLINE_LINUX=""' in text
    assert "ran update-grub" in text
    default = _guest_file(s.root_image, "/etc/default/grub")
    line = f'GRUB_CMDLINE_LINUX="crashkernel={X86_64_KDUMP.crashkernel_table}"'
    assert line in default.splitlines()
    cfg = _guest_file(s.root_image, "/boot/grub/grub.cfg")
    assert "generated by grub-mkconfig" in cfg
    linux = [ln.split() for ln in cfg.splitlines() if ln.strip().startswith("linux\t")
             or ln.strip().startswith("linux ")]  # fmt: skip
    assert linux, cfg[-2000:]
    assert any(words[1] == f"/boot/vmlinuz-{s.kernel.release}" for words in linux)
    for words in linux:
        assert f"crashkernel={X86_64_KDUMP.crashkernel_table}" in words[2:], words
