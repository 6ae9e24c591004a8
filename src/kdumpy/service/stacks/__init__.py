"""Storage and network stacks under a dump target, read host-only from the running system
and brought up again by the capture initramfs (issue 13).

* :mod:`.block`: the device-mapper/md layers under a block device (``lsblk --inverse``'s
  view): LVM (linear, thin), md RAID, LUKS, and the key files /etc/crypttab names.
* :mod:`.iscsi`, :mod:`.nvme`: the iSCSI sessions and NVMe/TCP controllers under the
  disks at the bottom (sysfs), logged in or connected again before the layers above.
* :mod:`.install`: what a stack puts into the capture initramfs (tools, modules, the
  plan ``/etc/kdumpy/stacks.json`` that :mod:`kdumpy.capture.stacks` follows).
"""
