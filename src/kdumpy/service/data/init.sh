#!/bin/sh
# /init of the kdumpy capture initramfs (written by `kdumpy rebuild`).
# Every value that comes from kdump.conf is in /etc/kdumpy/init.env, shell-quoted.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# A serial console: no cursor games from progress bars.
export TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /run /tmp /var/tmp
. /etc/kdumpy/init.env

say() { echo "kdumpy-init: $*"; }

load_modules() {
    while read -r mod; do
        [ -n "$mod" ] || continue
        insmod "/lib/modules/kdumpy/$mod.ko" 2>/dev/null || say "insmod $mod failed"
    done < /etc/kdumpy/modules
}

# A /dev node for /dev/..., UUID= or LABEL=, waiting for the driver to find the disk.
wait_device() {
    i=0
    while [ "$i" -lt "$KDUMP_DEVICE_TIMEOUT" ]; do
        case "$1" in
            /dev/*) [ -b "$1" ] && { echo "$1"; return 0; } ;;
            *) dev=$(findfs "$1" 2>/dev/null) && [ -b "$dev" ] && { echo "$dev"; return 0; } ;;
        esac
        sleep 1
        i=$((i + 1))
    done
    return 1
}

# Bring up the interface the first kernel used, found by its MAC address.
network_up() {
    iface=
    for dir in /sys/class/net/*; do
        [ "$(cat "$dir/address" 2>/dev/null)" = "$KDUMP_NET_MAC" ] && iface=${dir##*/}
    done
    [ -n "$iface" ] || { say "no interface with MAC $KDUMP_NET_MAC"; return 1; }
    ip link set lo up
    ip link set "$iface" up
    ip addr add "$KDUMP_NET_ADDRESS" dev "$iface"
    [ -z "$KDUMP_NET_GATEWAY" ] || ip route add default via "$KDUMP_NET_GATEWAY"
    say "network: $iface $KDUMP_NET_ADDRESS gateway ${KDUMP_NET_GATEWAY:-none}"
    i=0
    while [ "$i" -lt "$KDUMP_NET_TIMEOUT" ]; do
        ping -c 1 -W 1 "$KDUMP_NET_TARGET_IP" >/dev/null 2>&1 && return 0
        i=$((i + 1))
    done
    say "$KDUMP_NET_TARGET_IP does not answer ping; trying anyway"
}

mount_target() {
    case "$KDUMP_TARGET_KIND" in
        raw|ssh) return 0 ;;
        nfs)
            # Text options straight to the kernel; addr= is what mount.nfs would add.
            opts=$(echo "$KDUMP_MOUNT_OPTIONS" | sed -e 's/\(^\|,\)n\?f\?s\?vers=[^,]*//g')
            mount -t "$KDUMP_NFS_FSTYPE" -o "$opts,addr=$KDUMP_NET_TARGET_IP" \
                "$KDUMP_TARGET_SPEC" /kdumproot
            ;;
        *)
            dev=$(wait_device "$KDUMP_TARGET_SPEC") || { say "$KDUMP_TARGET_SPEC not found"; return 1; }
            mount -t "$KDUMP_TARGET_KIND" -o "$KDUMP_MOUNT_OPTIONS" "$dev" /kdumproot
            ;;
    esac || say "cannot mount $KDUMP_TARGET_SPEC on /kdumproot"
}

say "kdumpy capture initramfs for $KDUMP_KERNEL_RELEASE"
load_modules
[ "$KDUMP_NETWORK" != 1 ] || network_up
export PYTHONPATH="$KDUMP_PYTHONPATH" PYTHONDONTWRITEBYTECODE=1 HOME=/root
# md/LUKS/LVM under the target, bottom-up; on failure the reason is in
# /run/kdumpy/stack-failure and the capture side runs failure_action with it.
if [ -e /etc/kdumpy/stacks.json ]; then
    "$KDUMP_PYTHON" -S -m kdumpy.capture.stacks && mount_target
else
    mount_target
fi
if [ -e /proc/vmcore ]; then
    # --force: this is the capture kernel (/proc/vmcore exists), whatever its command line.
    "$KDUMP_PYTHON" -S -m kdumpy.capture --force
    say "capture exited with status $?; rebooting"
    sync
    reboot -f
else
    say "no /proc/vmcore: not a capture kernel, checking the runtime only"
    "$KDUMP_PYTHON" -S /usr/lib/kdumpy/selftest.py
    sync
    poweroff -f
fi
