#!/bin/sh
# kdumpy early kdump: load the capture kernel from inside the system initramfs.
#
# Runs as the first init-top script (initramfs-tools) or from a dracut cmdline hook, when
# rd.earlykdump is on the kernel command line.
# Messages go to the kernel log (/dev/kmsg, hence the journal), worded like RHEL's
# 99earlykdump so that `journalctl -b | grep early-kdump` finds them.
#
#   kdumpy-early.sh load        check rd.earlykdump and load the capture kernel
#   kdumpy-early.sh cmdline     print the capture kernel's command line (for tests)
#
# early.conf (written by `kdumpy early enable`) defines early_drop KEY (true when the
# parameter KEY must not reach the capture kernel), EARLY_BASE (KDUMP_COMMANDLINE: used
# instead of /proc/cmdline when set), EARLY_APPEND and EARLY_KEXEC_ARGS; EARLY_PYTHON when
# the capture kernel is loaded with kdumpy's own kexec_load loader instead of kexec-tools
# (a kernel without kexec_file_load on a machine kdumpy has such a loader for: arm64).

# kdumpy.service.early_python.ENTRY; PYTHONPATH below is its PYTHONPATH.
PY_ENTRY='from kdumpy.arch.arm64.kexec_load import main; raise SystemExit(main())'

EARLY_DIR=${EARLY_DIR:-/kdumpy-early}
PROC_CMDLINE=${PROC_CMDLINE:-/proc/cmdline}
CPUINFO=${CPUINFO:-/proc/cpuinfo}
SYSFS_KERNEL=${SYSFS_KERNEL:-/sys/kernel}
KMSG=${KMSG:-/dev/kmsg}

log() {
    # $1: syslog level (3 err, 4 warning, 5 notice); the identifier is what the journal shows.
    if ! printf '<%s>kdumpy-early[%s]: %s\n' "$1" "$$" "$2" 2>/dev/null >>"$KMSG"; then
        printf 'kdumpy-early: %s\n' "$2" >&2
    fi
}

# No subprocesses on the way to kexec (a fork+exec costs ~10 ms under TCG): files are read
# with the shell's read, results are left in variables instead of $(...).
read_first_line() {
    # $1: file, $2: variable (set even when the line has no newline; empty if unreadable).
    eval "$2="
    read -r "$2" <"$1" 2>/dev/null || :
}

# rd.earlykdump, rd.earlykdump=1|yes|on|true: enabled; =0|no|off|false: disabled (last wins).
requested() {
    wanted=0
    for param in $RUNNING_CMDLINE; do
        case "$param" in
            rd.earlykdump | rd.earlykdump=1 | rd.earlykdump=yes | rd.earlykdump=on | rd.earlykdump=true) wanted=1 ;;
            rd.earlykdump=*) wanted=0 ;;
        esac
    done
    [ "$wanted" = 1 ]
}

# Sets APICID to the boot CPU's APIC id (empty when /proc/cpuinfo does not say).
cpu0_apicid() {
    APICID=
    while read -r key rest; do
        if [ "$key" = apicid ]; then
            APICID=${rest#: }
            return 0
        fi
    done <"$CPUINFO"
    return 1
}

# The running kernel's parameters minus those early_drop names, then EARLY_APPEND and
# disable_cpu_apicid (what kdumpy start computes with kdumpy.service.cmdline); in CMDLINE.
capture_cmdline() {
    out=""
    for param in ${EARLY_BASE:-$RUNNING_CMDLINE}; do
        early_drop "${param%%=*}" || out="$out $param"
    done
    extra=$EARLY_APPEND
    if cpu0_apicid 2>/dev/null && [ -n "$APICID" ]; then
        extra="$extra disable_cpu_apicid=$APICID"
    fi
    for param in $extra; do
        case " $out " in
            *" $param "*) ;;
            *) out="$out $param" ;;
        esac
    done
    CMDLINE=${out# }
}

load() {
    if ! requested; then
        log 5 "early-kdump is disabled."
        return 0
    fi
    log 5 "early-kdump is enabled."
    if [ ! -e "$SYSFS_KERNEL/kexec_crash_loaded" ]; then
        log 3 "kexec: failed to load early-kdump kernel: kdump is not supported on this kernel"
        return 1
    fi
    read_first_line "$SYSFS_KERNEL/kexec_crash_size" size
    if [ "$size" = 0 ]; then
        log 3 "kexec: failed to load early-kdump kernel: no memory reserved for crash kernel (crashkernel=)"
        return 1
    fi
    read_first_line "$SYSFS_KERNEL/kexec_crash_loaded" loaded
    if [ "$loaded" = 1 ]; then
        log 5 "early-kdump: a capture kernel is already loaded"
        return 0
    fi
    capture_cmdline
    cmdline=$CMDLINE
    if [ -n "$EARLY_PYTHON" ]; then
        log 6 "early-kdump: loading the capture kernel (kdumpy kexec_load)"
        if err=$(PYTHONPATH="$EARLY_DIR/python" "$EARLY_PYTHON" -S -c "$PY_ENTRY" \
            --kernel "$EARLY_DIR/vmlinuz" --initrd "$EARLY_DIR/initrd.img" \
            --append="$cmdline" 2>&1 >/dev/null); then
            log 5 "kexec: loaded early-kdump kernel"
            return 0
        fi
        log 3 "kexec: failed to load early-kdump kernel: $(echo "$err" | tail -n 1)"
        return 1
    fi
    log 6 "early-kdump: loading the capture kernel (kexec -s -p)"
    # kexec_file_load (-s) first, as kdumpy start does; kexec_load for kernels without it.
    if err=$(kexec -s -p $EARLY_KEXEC_ARGS --command-line="$cmdline" \
        --initrd="$EARLY_DIR/initrd.img" "$EARLY_DIR/vmlinuz" 2>&1) ||
        err=$(kexec -p $EARLY_KEXEC_ARGS --command-line="$cmdline" \
            --initrd="$EARLY_DIR/initrd.img" "$EARLY_DIR/vmlinuz" 2>&1); then
        log 5 "kexec: loaded early-kdump kernel"
        return 0
    fi
    log 3 "kexec: failed to load early-kdump kernel: $(echo "$err" | tail -n 1)"
    return 1
}

set -f # parameters are words, never globs
. "$EARLY_DIR/early.conf" || {
    log 3 "kexec: failed to load early-kdump kernel: $EARLY_DIR/early.conf is missing"
    exit 1
}
read_first_line "$PROC_CMDLINE" RUNNING_CMDLINE
case "$1" in
    cmdline) capture_cmdline && echo "$CMDLINE" ;;
    *) load ;;
esac
