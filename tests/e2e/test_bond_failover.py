"""A bond with one dead port still saves: test_netstacks's bridge/VLAN/active-backup bond,
with the first NIC's carrier taken away (QMP ``set_link off``, what a pulled cable or a
dead switch port looks like to the guest) once the capture kernel is loaded.

The capture kernel boots with that NIC's link down; its bond must carry the dump over
the other port.  Oracles: the dump that arrived at the sshd (makedumpfile -R, drgn), the
guest's VLAN address in its directory name, and the capture kernel's bonding messages.
"""

from __future__ import annotations

import re

import pytest

from .test_netstacks import SETUP, check_ssh_dump, ssh_cycle


@pytest.mark.full
def test_bond_with_a_dead_port_still_saves(tmp_path, kernel, labnet):
    cut = {"KDUMPY-ARMED": ("set_link", {"name": "lab0", "up": False})}
    result, crash = ssh_cycle(tmp_path, kernel, labnet, SETUP, qmp_on_marker=cut, pause=3)
    serial = result.serial
    assert result.rc == 0, result.log[-3000:]
    assert "kdump: saved vmcore to" in serial, serial[-4000:]
    capture = serial[serial.index("Kernel panic") :]
    # The capture kernel's bonding driver (an oracle of its own) enslaved one port without
    # carrier and one with it.
    links = re.findall(r"bond0: \(slave eth\d\): Enslaving as an? \w+ interface with an? "
                       r"(up|down) link", capture)  # fmt: skip
    assert sorted(links) == ["down", "up"], capture[-4000:]
    check_ssh_dump(result, crash, kernel, tmp_path)
