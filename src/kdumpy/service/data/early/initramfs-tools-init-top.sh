#!/bin/sh
# kdumpy early kdump: load the capture kernel as early as the initramfs allows.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
    prereqs) prereqs; exit 0 ;;
esac
[ -f /kdumpy-early/kdumpy-early.sh ] || exit 0
/bin/sh /kdumpy-early/kdumpy-early.sh load
exit 0
