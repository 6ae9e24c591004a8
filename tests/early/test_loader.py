"""The boot-time loader script, run by real shells (dash and busybox sh, as in initramfs).

The capture kernel's command line it computes at boot must be the one ``kdumpy start``
computes in Python (kdumpy.service.cmdline, the service developer's module and the
independent implementation here).  Its log lines must be RHEL's wording, in /dev/kmsg's
``<level>`` format (written to a file here, not to the host's kernel log).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.service.cmdline import capture_cmdline
from kdumpy.service.early import write_loader_files
from kdumpy.service.sysconfig import Sysconfig, parse_sysconfig

SHELLS = [s for s in (["dash"], ["busybox", "sh"]) if shutil.which(s[0])]
CPUINFO = "processor\t: 0\napicid\t\t: 4\ninitial apicid\t: 4\n\nprocessor\t: 1\napicid\t\t: 6\n"
CMDLINES = [
    "BOOT_IMAGE=/vmlinuz-6.1 root=UUID=abc ro quiet crashkernel=256M rd.earlykdump",
    "console=ttyS0 root=/dev/vda rw panic=1 net.ifnames=0 crashkernel=2G-64G:256M rd.earlykdump=1",
    "root=/dev/sda1 panic-on-warn=1 hugepages=10 nr_cpus=8 irqpoll log_buf_len=1M rd.earlykdump",
    "ro rd.lvm.lv=vg/root rd.luks.uuid=x cma=64M swiotlb=65536 transparent_hugepage=always",
]
SYSCONFIGS = [
    "",
    'KDUMP_COMMANDLINE_REMOVE="quiet net.ifnames"\n'
    'KDUMP_COMMANDLINE_APPEND="irqpoll nr_cpus=1 panic=5"\n',
    'KDUMP_COMMANDLINE="root=/dev/vda console=ttyS0 quiet"\nKDUMP_COMMANDLINE_APPEND="nr_cpus=1"\n',
]


def _loader(tmp: Path, sysconfig: Sysconfig) -> Path:
    files = write_loader_files(tmp / "state", sysconfig)
    return files["loader"]


def _run(shell: list[str], loader: Path, tmp: Path, cmdline: str, *args: str,
         sysfs: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    (tmp / "cmdline").write_text(cmdline + "\n")
    (tmp / "cpuinfo").write_text(CPUINFO)
    env = {
        "PATH": os.environ["PATH"],
        "EARLY_DIR": str(loader.parent),
        "PROC_CMDLINE": str(tmp / "cmdline"),
        "CPUINFO": str(tmp / "cpuinfo"),
        "SYSFS_KERNEL": str(sysfs or tmp / "nosysfs"),
        "KMSG": str(tmp / "kmsg"),
    }
    return subprocess.run([*shell, str(loader), *args], capture_output=True, text=True, env=env,
                          timeout=30)  # fmt: skip


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@pytest.mark.parametrize("sysconfig_text", SYSCONFIGS)
@pytest.mark.parametrize("cmdline", CMDLINES)
def test_capture_cmdline_matches_kdumpy_start(tmp_path, shell, sysconfig_text, cmdline):
    sysconfig = parse_sysconfig(sysconfig_text, "sysconfig")
    loader = _loader(tmp_path, sysconfig)
    got = _run(shell, loader, tmp_path, cmdline, "cmdline")
    assert got.returncode == 0, got.stderr
    # kdumpy start's computation, with rd.earlykdump also dropped (it means nothing to
    # the capture kernel) and cpu0's APIC id from the same cpuinfo.
    expected = capture_cmdline(
        sysconfig.commandline or cmdline,
        sysconfig.commandline_remove + " rd.earlykdump",
        sysconfig.commandline_append,
        apicid=4,
    )
    assert got.stdout.split() == expected.split()


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
@pytest.mark.parametrize(
    ("cmdline", "enabled"),
    [("ro quiet", False), ("ro rd.earlykdump", True), ("rd.earlykdump=yes", True),
     ("rd.earlykdump rd.earlykdump=0", False), ("rd.earlykdumpx", False)],
)  # fmt: skip
def test_rd_earlykdump_and_log_lines(tmp_path, shell, cmdline, enabled):
    """Enabled or not (the Python reading agrees), and the kmsg lines RHEL admins grep for."""
    from kdumpy.service.early_cmdline import requested

    assert requested(cmdline) is enabled
    loader = _loader(tmp_path, Sysconfig())
    sysfs = tmp_path / "sys"  # a kernel without a crashkernel reservation
    sysfs.mkdir()
    (sysfs / "kexec_crash_loaded").write_text("0\n")
    (sysfs / "kexec_crash_size").write_text("0\n")
    got = _run(shell, loader, tmp_path, cmdline, "load", sysfs=sysfs)
    kmsg = (tmp_path / "kmsg").read_text().splitlines()
    if enabled:
        assert got.returncode == 1
        assert kmsg[0].startswith("<5>kdumpy-early[")
        assert kmsg[0].endswith("]: early-kdump is enabled.")
        assert kmsg[1].startswith("<3>")
        assert "kexec: failed to load early-kdump kernel: no memory reserved" in kmsg[1]
    else:
        assert got.returncode == 0
        assert len(kmsg) == 1 and kmsg[0].endswith("]: early-kdump is disabled.")


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_already_loaded_is_left_alone(tmp_path, shell):
    loader = _loader(tmp_path, Sysconfig())
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    (sysfs / "kexec_crash_loaded").write_text("1\n")
    (sysfs / "kexec_crash_size").write_text("268435456\n")
    got = _run(shell, loader, tmp_path, "rd.earlykdump", "load", sysfs=sysfs)
    assert got.returncode == 0
    assert "a capture kernel is already loaded" in (tmp_path / "kmsg").read_text()


def test_kexec_failure_is_logged_with_the_reason(tmp_path):
    """A real kexec-tools call that must fail: the reason reaches the log line."""
    if shutil.which("kexec") is None:
        pytest.skip("kexec-tools not installed")
    loader = _loader(tmp_path, Sysconfig())
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    (sysfs / "kexec_crash_loaded").write_text("0\n")
    (sysfs / "kexec_crash_size").write_text("268435456\n")
    # No vmlinuz/initrd.img in EARLY_DIR: kexec itself reports the missing kernel.
    got = _run(["sh"], loader, tmp_path, "rd.earlykdump", "load", sysfs=sysfs)
    last = (tmp_path / "kmsg").read_text().splitlines()[-1]
    assert got.returncode == 1
    assert last.startswith("<3>") and "kexec: failed to load early-kdump kernel: " in last
    assert len(last.split("early-kdump kernel: ", 1)[1]) > 3


def test_bad_parameter_name_in_sysconfig_is_one_line(tmp_path):
    from kdumpy.errors import KdumpyError
    from kdumpy.service.early_cmdline import render_early_conf

    sysconfig = parse_sysconfig('KDUMP_COMMANDLINE_REMOVE="quiet a|b"\n', "/etc/sysconfig/kdump")
    with pytest.raises(
        KdumpyError, match=r"^/etc/sysconfig/kdump: cannot use parameter name 'a\|b'"
    ):
        render_early_conf(sysconfig)
