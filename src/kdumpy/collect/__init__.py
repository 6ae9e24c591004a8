"""makedumpfile's job: classify pages from VMCOREINFO, filter, compress and write a dump.

    from kdumpy.collect import CollectOptions, collect
    summary = collect("/proc/vmcore", "/var/crash/vmcore", CollectOptions(dump_levels=[31]))

Layers: :mod:`.levels` (dump level bits), :mod:`.pagerules` (which struct page fields
and values mean what, chosen by which VMCOREINFO entries exist), :mod:`.memmap`
(finding and reading the struct pages through the vmemmap), :mod:`.classify` (numpy
decision chain over batches of struct pages), :mod:`.bitmap` (the 2nd bitmap, cycle
by cycle), :mod:`.compress` (per-page compressors and the ordered thread pool),
:mod:`.collector` (the streaming driver) and :mod:`.stats` (the summary).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CollectOptions", "Summary", "collect"]


def __getattr__(name: str) -> Any:
    # Lazy: the capture initramfs and the CLI import kdumpy.collect submodules cheaply.
    if name == "CollectOptions":
        from kdumpy.collect.options import CollectOptions

        return CollectOptions
    if name == "collect":
        from kdumpy.collect.collector import collect

        return collect
    if name == "Summary":
        from kdumpy.collect.stats import Summary

        return Summary
    raise AttributeError(name)
