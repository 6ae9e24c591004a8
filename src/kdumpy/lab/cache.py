"""Where the lab keeps what it downloads and builds, and how concurrent users share it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """The lab cache directory (``$KDUMPY_LAB_CACHE`` or ``~/.cache/kdumpy/lab``)."""
    env = os.environ.get("KDUMPY_LAB_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "kdumpy" / "lab"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold an exclusive lock named *name* in the cache.

    Several test sessions and developers share one cache; the lock makes the
    second one wait for the first download or build instead of racing it.
    """
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
