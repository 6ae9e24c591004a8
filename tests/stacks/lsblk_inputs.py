"""``lsblk -J -s -p -o NAME,KNAME,TYPE,FSTYPE,UUID DEV`` answers, written by hand the way
util-linux 2.38 prints them (inverse tree: each device's children are what it sits on)."""

from __future__ import annotations

MD_UUID = "0c9e5a43-11d2-7b54-6a0e-3f1d5c7e9a21"  # blkid's spelling of the array UUID
LUKS_UUID = "6f1c2a9e-5b3d-4e71-a0c8-9d2e4f6b1a37"


def _disk(name: str, fstype: str | None = None, uuid: str | None = None) -> dict:
    return {"name": name, "kname": name, "type": "disk", "fstype": fstype, "uuid": uuid}


def luks_on_thin_on_raid1() -> dict:
    """ext4 on LUKS on an LVM thin volume whose pool lives on md RAID1 over vdb and vdc."""
    raid = {
        "name": "/dev/md127", "kname": "/dev/md127", "type": "raid1",
        "fstype": "LVM2_member", "uuid": "pv-uuid",
        "children": [_disk("/dev/vdb", "linux_raid_member", MD_UUID),
                     _disk("/dev/vdc", "linux_raid_member", MD_UUID)],
    }  # fmt: skip
    tmeta = {"name": "/dev/mapper/vg--k-pool_tmeta", "kname": "/dev/dm-0", "type": "lvm",
             "fstype": None, "uuid": None, "children": [raid]}  # fmt: skip
    tdata = {"name": "/dev/mapper/vg--k-pool_tdata", "kname": "/dev/dm-1", "type": "lvm",
             "fstype": None, "uuid": None, "children": [raid]}  # fmt: skip
    tpool = {"name": "/dev/mapper/vg--k-pool-tpool", "kname": "/dev/dm-2", "type": "lvm",
             "fstype": None, "uuid": None, "children": [tmeta, tdata]}  # fmt: skip
    thin = {"name": "/dev/mapper/vg--k-crash", "kname": "/dev/dm-3", "type": "lvm",
            "fstype": "crypto_LUKS", "uuid": LUKS_UUID, "children": [tpool]}  # fmt: skip
    top = {"name": "/dev/mapper/kdumpcrypt", "kname": "/dev/dm-4", "type": "crypt",
           "fstype": "ext4", "uuid": "fs-uuid", "children": [thin]}  # fmt: skip
    return {"blockdevices": [top]}


def linear_lvm_two_pvs() -> dict:
    """A linear LV spanning a partition and a whole disk."""
    part = {"name": "/dev/vdb1", "kname": "/dev/vdb1", "type": "part",
            "fstype": "LVM2_member", "uuid": "a",
            "children": [_disk("/dev/vdb")]}  # fmt: skip
    lv = {"name": "/dev/mapper/data-var_crash", "kname": "/dev/dm-0", "type": "lvm",
          "fstype": "xfs", "uuid": "fs",
          "children": [part, _disk("/dev/vdc", "LVM2_member", "b")]}  # fmt: skip
    return {"blockdevices": [lv]}


def raid5() -> dict:
    members = [_disk(f"/dev/vd{c}", "linux_raid_member", MD_UUID) for c in "bcd"]
    md = {"name": "/dev/md0", "kname": "/dev/md0", "type": "raid5", "fstype": "ext4",
          "uuid": "fs", "children": members}  # fmt: skip
    return {"blockdevices": [md]}


def plain_disk() -> dict:
    return {"blockdevices": [_disk("/dev/vdb", "ext4", "fs")]}
