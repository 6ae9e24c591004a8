"""The lab's Debian guest itself: it boots the lab kernel from its virtio disk with
systemd and Debian's own initramfs-tools initrd, and runs jobs with kdumpy installed."""

from __future__ import annotations

from kdumpy.lab.debian_config import chroot
from kdumpy.lab.debian_job import Job, run_job


def test_guest_boots_and_runs_a_job(tmp_path, kernel):
    script = (
        "uname -r > out/release\n"
        "ps -o comm= -p 1 > out/init\n"
        "findmnt -no SOURCE / > out/root\n"
        "python3 -c 'import kdumpy.capture, kdumpy.service.config' && echo ok > out/import\n"
        "cat /sys/kernel/kexec_crash_size > out/crash_size\n"
        "echo from-guest > out/file\n"
    )
    result = run_job(Job(script, crashkernel="128M", timeout=900), tmp_path, kernel)
    assert result.rc == 0, result.log
    assert (result.out / "release").read_text().strip() == kernel.release
    assert (result.out / "init").read_text().strip() == "systemd"
    assert (result.out / "root").read_text().strip() == "/dev/vda"
    assert (result.out / "import").read_text().strip() == "ok"
    assert int((result.out / "crash_size").read_text()) == 128 << 20
    # The serial console shows the initrd's own (initramfs-tools) messages and systemd.
    assert "Run /init as init process" in result.serial
    assert "KDUMPY-JOB-END rc=0" in result.serial


def test_initrd_is_made_by_initramfs_tools(kernel):
    from kdumpy.lab.debian import debootstrap_rootfs, install_kernel

    install_kernel(kernel)
    root = debootstrap_rootfs()
    listing = chroot(root, "lsinitramfs", f"/boot/initrd.img-{kernel.release}")
    assert "conf/initramfs.conf" in listing  # initramfs-tools' layout
    assert "scripts/local" in listing
    assert f"lib/modules/{kernel.release}/kernel/drivers/block/virtio_blk.ko" in listing
