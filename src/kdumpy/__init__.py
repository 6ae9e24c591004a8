"""kdumpy: the Linux kdump system in Python.

Layers (dependencies point one way):
    vmcore  -> collect -> capture, service -> cli
    vmcore  -> analysis
    lab (test bench: real kernels crashing in QEMU) sits beside them.
"""

__version__ = "0.1.0"
