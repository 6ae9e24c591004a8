"""Which loader kdumpy has for a machine whose kernel lacks kexec_file_load.

Debian's arm64 kernels are built without ``KEXEC_FILE``, and the kexec-tools they ship
(2.0.25) writes a broken ELF core header there (it looks up ``_text``, which kallsyms lacks
without ``KALLSYMS_ALL``; ``/proc/vmcore`` then claims about 16 EiB).  kdumpy's own
kexec_load loader (:mod:`kdumpy.arch.arm64.kexec_load`) places the kernel from
``/proc/iomem`` and ``_stext`` instead.  Where kdumpy has none, the service falls back to
kexec-tools.  Standard library only, like the loaders (early kdump imports this).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kdumpy.arch.arm64 import kexec_load as arm64_kexec_load

# loader(kernel, initrd, command line): raises a KdumpyError naming what failed
LegacyLoader = Callable[[Path, "Path | None", str], object]

_LEGACY_LOADERS: dict[str, LegacyLoader] = {"aarch64": arm64_kexec_load.load_capture_kernel}


def legacy_loader(machine: str) -> LegacyLoader | None:
    """kdumpy's kexec_load loader for ``uname -m`` = ``machine``, or None (use kexec-tools)."""
    return _LEGACY_LOADERS.get(machine)
