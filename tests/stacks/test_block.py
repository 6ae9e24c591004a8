"""Detection of the layers under a dump target from lsblk's inverse tree, and the LUKS
key-file rule (kdumpy config check's refusals)."""

from __future__ import annotations

import os

import pytest

from kdumpy.errors import KdumpyError
from kdumpy.service import confcheck
from kdumpy.service.config import ConfigError, parse_config
from kdumpy.service.stacks import block

from . import lsblk_inputs as inputs


def test_luks_on_thin_on_raid1_bottom_up():
    stack = block.parse_lsblk(inputs.luks_on_thin_on_raid1())
    assert [layer.kind for layer in stack.layers] == ["md", "lvm", "luks"]
    md, lvm, luks = stack.layers
    assert (md.device, md.level, md.uuid) == ("/dev/md127", "raid1", inputs.MD_UUID)
    # vg--k-crash: the doubled dash is one dash in the VG name; the pool is folded in.
    assert (lvm.vg, lvm.lv, lvm.thin) == ("vg-k", "crash", True)
    assert (luks.dm_name, luks.uuid, luks.backing) == (
        "kdumpcrypt",
        inputs.LUKS_UUID,
        "/dev/mapper/vg--k-crash",
    )
    assert stack.disks == ("/dev/vdb", "/dev/vdc")  # once each, though two LVs sit on them
    assert luks.modules() == ["dm_mod", "dm_crypt"]
    assert lvm.modules() == ["dm_mod", "dm_thin_pool"]
    assert md.modules() == ["md_mod", "raid1"]


def test_linear_lvm_and_raid5_and_plain_disk():
    linear = block.parse_lsblk(inputs.linear_lvm_two_pvs())
    assert [(x.kind, x.vg, x.lv, x.thin) for x in linear.layers] == [
        ("lvm", "data", "var_crash", False)
    ]
    assert linear.disks == ("/dev/vdb1", "/dev/vdc")  # partitions: their disk's driver
    assert linear.layers[0].modules() == ["dm_mod"]
    raid = block.parse_lsblk(inputs.raid5())
    assert raid.layers[0].modules() == ["md_mod", "raid456"]
    assert raid.disks == ("/dev/vdb", "/dev/vdc", "/dev/vdd")
    plain = block.parse_lsblk(inputs.plain_disk())
    assert plain.layers == () and plain.disks == ("/dev/vdb",)


@pytest.mark.parametrize("name, vg, lv", [
    ("vg-lv", "vg", "lv"), ("my--vg-my--lv", "my-vg", "my-lv"), ("a---b", "a-", "b"),
    ("vg-lv-with-dashes", "vg", "lv-with-dashes"),
])  # fmt: skip
def test_split_dm_name(name, vg, lv):
    # lvm's dm name escaping: every '-' inside a name is doubled.
    assert block.split_dm_name(name) == (vg, lv)


def test_unsupported_layers_are_named():
    mpath = {
        "blockdevices": [
            {
                "name": "/dev/mapper/mpatha",
                "type": "mpath",
                "children": [{"name": "/dev/sda", "type": "disk"}],
            }
        ]
    }
    with pytest.raises(KdumpyError, match="mpatha is a mpath device: kdumpy cannot bring"):
        block.parse_lsblk(mpath)
    plain_crypt = {"blockdevices": [{"name": "/dev/mapper/c", "type": "crypt",
                                     "children": [{"name": "/dev/vdb", "type": "disk",
                                                   "fstype": None}]}]}  # fmt: skip
    with pytest.raises(KdumpyError, match="plain dm-crypt"):
        block.parse_lsblk(plain_crypt)
    with pytest.raises(KdumpyError, match="no block device"):
        block.parse_lsblk({"blockdevices": []})


def _luks_stack() -> block.Stack:
    return block.parse_lsblk(inputs.luks_on_thin_on_raid1())


def test_luks_key_from_crypttab(tmp_path):
    key = tmp_path / "crash.key"
    key.write_bytes(b"secret")
    text = (f"# comment\nother UUID=1234 none luks\n"
            f"kdumpcrypt UUID={inputs.LUKS_UUID.upper()} {key} "
            "luks,keyfile-offset=16,keyfile-size=32\n")  # fmt: skip
    (found,) = block.luks_keys(_luks_stack(), text)
    assert (found.uuid, found.key_file, found.offset, found.size) == (
        inputs.LUKS_UUID,
        str(key),
        16,
        32,
    )
    # Matched by the dm name alone, too (a source by path).
    (by_name,) = block.luks_keys(_luks_stack(), f"kdumpcrypt /dev/whatever {key}\n")
    assert by_name.key_file == str(key)


@pytest.mark.parametrize("crypttab, reason", [
    ("", "has no entry; name a key file there: the capture kernel cannot ask for a passphrase"),
    ("kdumpcrypt UUID={u} none luks\n", "has no key file (third field)"),
    ("kdumpcrypt UUID={u} - luks\n", "has no key file (third field)"),
    ("kdumpcrypt UUID={u}\n", "has no key file (third field)"),
    ("kdumpcrypt UUID={u} /nonexistent/key luks\n", "key file /nonexistent/key does not exist"),
    ("kdumpcrypt UUID={u} /etc/hostname luks,keyscript=/bin/ask\n", "keyscript= cannot run"),
    ("kdumpcrypt UUID={u} /etc/hostname luks,keyfile-offset=x\n", "keyfile-offset=x: not a"),
])  # fmt: skip
def test_luks_without_usable_key_is_refused(crypttab, reason):
    with pytest.raises(KdumpyError) as err:
        block.luks_keys(_luks_stack(), crypttab.format(u=inputs.LUKS_UUID))
    message = str(err.value)
    assert message.startswith("/etc/crypttab: LUKS volume kdumpcrypt"), message
    assert reason in message and "\n" not in message


def test_config_check_refuses_luks_without_key(monkeypatch, tmp_path):
    """kdumpy config check's message names kdump.conf, the target and the reason."""
    config = parse_config("ext4 UUID=fs-uuid\npath /var/crash\n", "/etc/kdump.conf")
    monkeypatch.setattr(confcheck.targets, "device_node", lambda spec: "/dev/mapper/kdumpcrypt")
    monkeypatch.setattr(
        confcheck.block, "detect", lambda node: block.parse_lsblk(inputs.luks_on_thin_on_raid1())
    )
    with pytest.raises(ConfigError) as err:
        confcheck.check_stack(config, crypttab="")
    assert str(err.value).startswith(
        "/etc/kdump.conf: dump target UUID=fs-uuid: /etc/crypttab: LUKS volume kdumpcrypt"
    )
    key = tmp_path / "k"
    key.write_bytes(b"x")
    crypttab = f"kdumpcrypt UUID={inputs.LUKS_UUID} {key} luks\n"
    stack = confcheck.check_stack(config, crypttab=crypttab)
    assert stack is not None and [x.kind for x in stack.layers] == ["md", "lvm", "luks"]


def test_cipher_aliases_from_luks_dump():
    luks2 = (
        "LUKS header information\nVersion:       \t2\nData segments:\n  0: crypt\n"
        "\toffset: 16777216 [bytes]\n\tcipher: aes-xts-plain64\n\tsector: 512 [bytes]\n"
    )
    luks1 = (
        "LUKS header information for /dev/vdb\n\nVersion:       \t1\n"
        "Cipher name:   \tserpent\nCipher mode:   \tcbc-essiv:sha256\n"
    )
    assert block.luks_cipher(luks2) == "aes-xts-plain64"
    assert block.luks_cipher(luks1) == "serpent-cbc-essiv:sha256"
    assert block.cipher_aliases("aes-xts-plain64") == ["crypto-aes", "crypto-xts"]
    assert block.cipher_aliases("serpent-cbc-essiv:sha256") == [
        "crypto-serpent",
        "crypto-cbc",
        "crypto-essiv",
        "crypto-sha256",
    ]
    with pytest.raises(KdumpyError, match="no cipher"):
        block.luks_cipher("garbage")


def test_runtime_memory_is_the_parity_arrays_stripe_caches(tmp_path):
    """raid5.h: NR_STRIPES (256) stripes of one page per member; RAID1 and LVM add none."""
    for name, disks in (("md0", "3"), ("md1", "2")):
        (tmp_path / "block" / name / "md").mkdir(parents=True)
        (tmp_path / "block" / name / "md" / "raid_disks").write_text(disks + "\n")
    raid5 = block.Layer("md", "/dev/md0", uuid="u", level="raid5")
    raid1 = block.Layer("md", "/dev/md1", uuid="v", level="raid1")
    lvm = block.Layer("lvm", "/dev/mapper/vg-lv", vg="vg", lv="lv", dm_name="vg-lv")
    page = os.sysconf("SC_PAGE_SIZE")
    stack = block.Stack("/dev/mapper/vg-lv", (raid5, raid1, lvm))
    assert block.runtime_memory(stack, str(tmp_path)) == 256 * 3 * page
    assert block.runtime_memory(block.Stack("/dev/md1", (raid1,)), str(tmp_path)) == 0
    missing = block.Stack("/dev/md7", (block.Layer("md", "/dev/md7", uuid="w", level="raid6"),))
    with pytest.raises(KdumpyError, match=r"/dev/md7: no md/raid_disks in sysfs"):
        block.runtime_memory(missing, str(tmp_path))
