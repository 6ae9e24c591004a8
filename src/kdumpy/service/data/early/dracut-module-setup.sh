#!/bin/bash
# kdumpy early kdump dracut module (installed by `kdumpy early enable`).

check() {
    # Only when asked for (add_dracutmodules in /etc/dracut.conf.d/99-kdumpy-early.conf).
    return 255
}

depends() {
    echo base
}

install() {
    local state="@STATE_DIR@"
    local capture_initrd="$state/initramfs-${kernel}kdump.img"
    local vmlinuz=""
    for candidate in "/boot/vmlinuz-$kernel" "/lib/modules/$kernel/vmlinuz"; do
        [[ -f $candidate ]] && vmlinuz=$candidate && break
    done
    if [[ -z $vmlinuz || ! -f $capture_initrd ]]; then
        dwarn "kdumpy early kdump: no capture kernel/initramfs for $kernel (run: kdumpy rebuild --kernel-release $kernel); early kdump will not work"
        return 0
    fi
    inst_multiple kexec cat tail
    inst_simple "$vmlinuz" /kdumpy-early/vmlinuz
    inst_simple "$capture_initrd" /kdumpy-early/initrd.img
    inst_simple "$state/early/early.conf" /kdumpy-early/early.conf
    inst_simple "$state/early/kdumpy-early.sh" /kdumpy-early/kdumpy-early.sh
    inst_hook cmdline 00 "$moddir/kdumpy-early-hook.sh"
}
