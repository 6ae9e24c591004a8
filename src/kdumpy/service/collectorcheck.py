"""Whether the configured makedumpfile can filter this kernel's dump.

makedumpfile tells free (buddy), offline, slab and hugetlb pages apart by the page type
the kernel keeps in ``struct page``'s ``_mapcount``.  Linux 6.12 (kernel commit
4ffca5a96678, "mm: support only one page_type per page") turned the type from flag bits
into a value in the field's top byte.  makedumpfile before 1.7.7 still derives flags from
it: every typed page looks like slab, so free pages stay in the dump (at ``-d 31`` a dump
about as large as memory, written while the machine is down) and hugetlb detection
misfires on user pages; on the lab's 6.12 and 7.x guests its ``-d 31`` dumps lacked a
slab page in use (the pid IDR's xarray node: drgn's task walk stopped at "Excluded
page", found by the full matrix's NFS cycles with makedumpfile).  makedumpfile 1.7.7 fixed it (its
commit 72c3414, issue #16); Debian 12 ships 1.7.2.  kdumpctl starts such a
configuration without a word; ``kdumpy start`` says so, and names the way out, before
the crash rather than after it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence

from kdumpy.arch.base import release_version
from kdumpy.collect import levels
from kdumpy.errors import KdumpyError

PAGE_TYPE_VALUES = (6, 12)  # the first kernel that stores a page type as a value
FIXED_IN = (1, 7, 7)  # the first makedumpfile that reads it
# Only these dump level bits depend on page types (free pages; user pages next to hugetlb).
TYPE_DEPENDENT_LEVELS = levels.EXCLUDE_FREE | levels.EXCLUDE_USER

VersionOf = Callable[[str], tuple[int, int, int] | None]


def makedumpfile_version(program: str) -> tuple[int, int, int] | None:
    """The version ``program -v`` prints ("makedumpfile: version 1.7.2 (released on
    ...)"); None when it cannot be run or says something else."""
    path = shutil.which(program)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", proc.stdout + proc.stderr)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def collector_dump_level(argv: Sequence[str]) -> int:
    """The first dump level of a makedumpfile command line (its default is 0)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-d", dest="level", default="0")
    known, _ = parser.parse_known_args(list(argv[1:]))
    return levels.parse_dump_levels(known.level)[0]


def collector_warning(
    argv: Sequence[str], release: str, version_of: VersionOf = makedumpfile_version
) -> str | None:
    """One line for the administrator when ``argv`` (a makedumpfile core_collector)
    cannot filter the dump of kernel ``release`` as asked; None when it can."""
    kernel = release_version(release)
    if kernel is None or kernel < PAGE_TYPE_VALUES:
        return None
    try:
        level = collector_dump_level(argv)
    except KdumpyError:
        return None  # the configuration check names a bad level
    if not level & TYPE_DEPENDENT_LEVELS:
        return None
    version = version_of(argv[0])
    if version is None or version >= FIXED_IN:
        return None
    found = ".".join(map(str, version))
    return (
        f"core_collector: makedumpfile {found} cannot tell free pages from slab on Linux "
        f"{kernel[0]}.{kernel[1]} (page types changed in 6.12; fixed in makedumpfile 1.7.7): "
        f"-d {level} would keep free pages (a dump near the size of memory) or leave out "
        f"slab pages in use (a dump drgn and crash cannot walk); use "
        "'core_collector kdumpy collect ...' or makedumpfile 1.7.7 or later"
    )
