#!/bin/sh
# kdumpy early kdump (installed by `kdumpy early enable`; removed by `kdumpy early disable`).
# Copies the capture kernel, its initramfs and kexec (or kdumpy's loader and the Python it
# needs) into the system initramfs.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
    prereqs) prereqs; exit 0 ;;
esac
. /usr/share/initramfs-tools/hook-functions

STATE_DIR="@STATE_DIR@"
capture_initrd="$STATE_DIR/initramfs-${version}kdump.img"
kernel=""
for candidate in "/boot/vmlinuz-$version" "/lib/modules/$version/vmlinuz"; do
    if [ -f "$candidate" ]; then kernel=$candidate; break; fi
done
if [ -z "$kernel" ] || [ ! -f "$capture_initrd" ]; then
    # A kernel installed after `kdumpy early enable`: do not break its initramfs.
    echo "W: kdumpy early kdump: no capture kernel/initramfs for $version" \
        "(run: kdumpy rebuild --kernel-release $version); early kdump will not work" >&2
    exit 0
fi
mkdir -p "$DESTDIR/kdumpy-early"
cp "$kernel" "$DESTDIR/kdumpy-early/vmlinuz"
cp "$capture_initrd" "$DESTDIR/kdumpy-early/initrd.img"
cp "$STATE_DIR/early/early.conf" "$DESTDIR/kdumpy-early/early.conf"
cp "$STATE_DIR/early/kdumpy-early.sh" "$DESTDIR/kdumpy-early/kdumpy-early.sh"
chmod 0755 "$DESTDIR/kdumpy-early/kdumpy-early.sh"
if [ -f "$STATE_DIR/early/python.list" ]; then
    # kdumpy's kexec_load loader: the interpreter and extension modules (with the libraries
    # they link), then the byte code tree `kdumpy early enable` compiled.
    while IFS= read -r file; do copy_exec "$file"; done <"$STATE_DIR/early/python.list"
    cp -R "$STATE_DIR/early/python/." "$DESTDIR/"
else
    copy_exec "@KEXEC@" /sbin
fi
