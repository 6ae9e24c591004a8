"""The first kernel's side of kdump: kdump.conf, crashkernel=, loading, capture initramfs.

Kept import-free on purpose: the capture initramfs carries ``kdumpy.service.config``
(the parsed kdump.conf) without the rest of this package.
"""
