"""What a storage stack puts into the capture initramfs, and what it leaves out."""

from __future__ import annotations

import json

from kdumpy.service.stacks import block
from kdumpy.service.stacks.install import LVM_CONF, MDADM_CONF, PLAN_PATH, plan_stack

from . import lsblk_inputs as inputs

LUKS2_DUMP = "LUKS header information\nVersion:       \t2\n\tcipher: aes-xts-plain64\n"
# modules.alias's answer for the crypto names (aesni_intel and aes_generic provide aes).
ALIASES = {"crypto-aes": ["aesni_intel", "aes_generic"], "crypto-xts": ["xts"]}


def _plan(data: dict, keys=()):
    stack = block.parse_lsblk(data)
    return plan_stack(stack, list(keys), {inputs.LUKS_UUID: LUKS2_DUMP},
                      lambda alias: ALIASES.get(alias, []),
                      tool=lambda name: f"/usr/sbin/{name}")  # fmt: skip


def test_plain_disk_adds_nothing():
    files = _plan(inputs.plain_disk())
    assert (files.tools, files.files, files.host_files, files.modules) == ([], {}, {}, [])
    assert files.disks == ["/dev/vdb"]


def test_linear_lvm_adds_lvm_only():
    files = _plan(inputs.linear_lvm_two_pvs())
    assert files.tools == ["/usr/sbin/lvm"]  # no mdadm, no cryptsetup
    assert sorted(files.files) == sorted([LVM_CONF, PLAN_PATH])
    assert files.modules == ["dm_mod"]  # no thin pool, no md, no dm_crypt
    conf = files.files[LVM_CONF][0].decode()
    assert "udev_sync = 0" in conf and 'thin_check_executable = ""' in conf
    plan = json.loads(files.files[PLAN_PATH][0])
    assert plan["layers"] == [{"kind": "lvm", "device": "/dev/mapper/data-var_crash",
                               "vg": "data", "lv": "var_crash", "thin": False}]  # fmt: skip


def test_raid5_adds_mdadm_and_its_config():
    files = _plan(inputs.raid5())
    assert files.tools == ["/usr/sbin/mdadm"]
    assert files.modules == ["md_mod", "raid456"]
    # mdadm's own UUID spelling, 4 groups of 8 hex digits.
    assert files.files[MDADM_CONF][0].decode().splitlines() == [
        "DEVICE partitions",
        "AUTO -all",
        "ARRAY /dev/md0 UUID=0c9e5a43:11d27b54:6a0e3f1d:5c7e9a21",
    ]


def test_luks_thin_raid1_in_order_with_key(tmp_path):
    key = block.LuksKey(inputs.LUKS_UUID, str(tmp_path / "k"), offset=0, size=64)
    files = _plan(inputs.luks_on_thin_on_raid1(), [key])
    assert files.tools == ["/usr/sbin/mdadm", "/usr/sbin/lvm", "/usr/sbin/cryptsetup"]
    assert files.modules == ["md_mod", "raid1", "dm_mod", "dm_thin_pool", "dm_crypt",
                             "aesni_intel", "aes_generic", "xts"]  # fmt: skip
    dest = f"/etc/kdumpy/luks/{inputs.LUKS_UUID}.key"
    assert files.host_files == {dest: (str(tmp_path / "k"), 0o400)}  # owner read only
    plan = json.loads(files.files[PLAN_PATH][0])
    assert [s["kind"] for s in plan["layers"]] == ["md", "lvm", "luks"]
    assert plan["layers"][2] == {
        "kind": "luks", "device": "/dev/mapper/kdumpcrypt", "uuid": inputs.LUKS_UUID,
        "name": "kdumpcrypt", "backing": "/dev/mapper/vg--k-crash", "key_file": dest,
        "keyfile_offset": 0, "keyfile_size": 64,
        "cipher": "aes-xts-plain64"}  # fmt: skip
    assert plan["layers"][1]["thin"] is True
