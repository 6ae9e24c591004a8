"""The capture kernel's job: save /proc/vmcore and its kernel log to the dump target.

Run as ``python3 -m kdumpy.capture`` (or ``kdumpy save``) by the capture initramfs's
``/init`` once ``/proc/vmcore`` exists.  The flow follows kdump-utils' kdump.sh:

    kdump_pre -> vmcore-dmesg.txt -> vmcore-incomplete -> sync -> vmcore -> kdump_post
    -> kexec-dmesg.log -> final_action          (any failure: emergency hooks, failure_action)

Modules: :mod:`.log` (console and kexec-dmesg.log), :mod:`.layout` (directory and file
names), :mod:`.hooks` (kdump_pre/post/emergency), :mod:`.collector` (running the core
collector), :mod:`.targets` (local fs, raw, ssh, NFS), :mod:`.actions` (reboot/halt/
poweroff/shell), :mod:`.flow` (the save itself), :mod:`.main` (entry point).

Everything here runs inside the capture initramfs: standard library, :mod:`kdumpy.errors`,
:mod:`kdumpy.service.config`, :mod:`kdumpy.collect` (``kdumpy collect`` runs in this
process) and :mod:`kdumpy.vmcore` only.
"""

# /init runs `python3 -m kdumpy.capture`: -m needs runpy and what it imports, and the
# initramfs builder ships the modules that importing this package loads.
import runpy  # noqa: F401

from kdumpy.errors import KdumpyError


class CaptureError(KdumpyError):
    """The dump could not be saved (target unreachable or full, collector failed...)."""
