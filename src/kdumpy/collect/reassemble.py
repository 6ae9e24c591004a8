"""``--reassemble``: join the files of a ``--split`` dump into one kdump-compressed file.

The split set is opened as one dump by :func:`kdumpy.vmcore.open_dump` (which checks
the headers match and the pfn ranges join up), and written again with the set's own
dump level and compression: the same pages, the zero page shared again, and the
single-file layout (``split = 0``).
"""

from __future__ import annotations

from kdumpy.collect.collector import _collect_once
from kdumpy.collect.options import CollectOptions
from kdumpy.collect.source import DumpSource
from kdumpy.collect.stats import Summary
from kdumpy.errors import KdumpyError
from kdumpy.vmcore import open_dump
from kdumpy.vmcore.compression import COMPRESSION_NAMES


def reassemble(parts: list[str], dst: str) -> Summary:
    """Write the split set ``parts`` as one file ``dst``."""
    dump = open_dump(parts)
    if dump.format != "kdump-split":
        dump.close()
        raise KdumpyError(f"{parts[0]}: not a set of --split kdump-compressed files")
    if dump.warnings:
        # A set with a file missing opens (its range reads as absent), but joined it would
        # pass for a complete dump: refuse, naming what is missing.
        dump.close()
        raise KdumpyError(f"{parts[0]}: cannot reassemble an incomplete set: {dump.warnings[0]}")
    with DumpSource(dump) as src:
        level = src.input_level
        compression = COMPRESSION_NAMES.get(dump.header.status & 0x27, "none")  # type: ignore[attr-defined]
        options = CollectOptions(dump_levels=[level], compression=compression)
        summary = Summary(dump_level=level, output=dst)
        _collect_once(src, dst, options, level, summary, None, last_try=True)
    return summary
