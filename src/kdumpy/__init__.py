"""kdumpy: the Linux kdump system in Python.

Layers (dependencies point one way):
    vmcore  -> collect -> capture, service -> cli
    vmcore  -> analysis
    lab (test bench: real kernels crashing in QEMU) sits beside them.

For scripts, the analysis API (:mod:`kdumpy.analysis.api`)::

    import kdumpy
    prog = kdumpy.open("vmcore")          # a Program: symbols, types, memory, helpers
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# kdumpy.open, kdumpy.Program and kdumpy.Object come from the analysis API, imported
# on first use only: `import kdumpy` stays cheap for the CLI (`kdumpy --version`) and
# for the capture kernel, whose initramfs carries what capture imports and no more (its
# builder scans import statements, so the name is given to importlib as a string).
_API_NAMES = ("open", "Program", "Object")
_API_MODULE = "kdumpy.analysis.api"


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        return getattr(importlib.import_module(_API_MODULE), name)
    raise AttributeError(f"module 'kdumpy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API_NAMES])
