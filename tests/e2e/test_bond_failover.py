"""A bond with one dead port still saves: test_netstacks's bridge/VLAN/active-backup bond,
with the first NIC's carrier taken away (QMP ``set_link off``, what a pulled cable or a
dead switch port looks like to the guest) once the capture kernel is loaded.

The capture kernel boots with that NIC's link down; its bond must carry the dump over
the other port.  Oracles: the dump that arrived at the sshd (makedumpfile -R, drgn), the
guest's VLAN address in its directory name, and the capture kernel's bonding messages.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kdumpy.lab.debian_kdump import Cycle, run_cycle
from kdumpy.lab.netlab import LabNet
from kdumpy.lab.servers import Sshd

from .helpers import DIR_NAME, check_dump, first_kernel_serial
from .test_netstacks import GUEST, NO_WAIT_ONLINE, SERVER, SETUP


@pytest.fixture
def labnet():
    with LabNet() as net:
        yield net


@pytest.mark.full
def test_bond_with_a_dead_port_still_saves(tmp_path, kernel, labnet):
    sshd = Sshd(tmp_path / "sshd", netns=labnet.name, listen=(SERVER,)).start()
    try:
        crash = tmp_path / "server-crash"
        crash.mkdir()
        mac_a, mac_b = labnet.macs()
        files: dict[str, bytes | str] = {
            "setup.sh": SETUP.format(mac_a=mac_a, mac_b=mac_b, guest=GUEST, server=SERVER),
            "ssh/kdump_id_rsa": Path(sshd.client_key).read_bytes(),
            "ssh/known_hosts": sshd.known_hosts_line(SERVER),
            "ssh/config": sshd.client_config(SERVER),
        }
        conf = (f"ssh root@{SERVER}\npath {crash}\nextra_bins /root/.ssh/config\n"
                "final_action poweroff\n")  # fmt: skip
        cut = {"KDUMPY-ARMED": ("set_link", {"name": "lab0", "up": False})}
        result = run_cycle(Cycle(conf, files=files, extra_args=labnet.qemu_args(),
                                 netns=labnet.name, extra_cmdline=NO_WAIT_ONLINE,
                                 qmp_on_marker=cut, pause=3),
                           tmp_path / "run", kernel)  # fmt: skip
    finally:
        sshd.stop()
    serial = result.serial
    print(f"markers (s after QEMU start): {result.run.markers}")
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    capture = serial[serial.index("Kernel panic") :]
    # The capture kernel's bonding driver (an oracle of its own) enslaved one port without
    # carrier and one with it.
    links = re.findall(r"bond0: \(slave eth\d\): Enslaving as an? \w+ interface with an? "
                       r"(up|down) link", capture)  # fmt: skip
    assert sorted(links) == ["down", "up"], capture[-4000:]
    (dump_dir,) = [p for p in crash.iterdir() if p.is_dir()]
    match = DIR_NAME.fullmatch(dump_dir.name)
    assert match and match.group(1) == GUEST, dump_dir.name
    out = tmp_path / "vmcore"
    with open(dump_dir / "vmcore.flat", "rb") as src:
        subprocess.run(["makedumpfile", "-R", str(out)], stdin=src, check=True,
                       capture_output=True)  # fmt: skip
    check_dump(out, kernel, first_kernel_serial(serial))
