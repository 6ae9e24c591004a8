"""What every dump target offers the save flow (:class:`Destination`)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from kdumpy.capture.log import CaptureLog


class Destination(ABC):
    """One dump target during a capture."""

    #: False for raw devices: they hold the dump only (no dmesg, no log, no directory).
    has_files = True

    def __init__(self, log: CaptureLog) -> None:
        self.log = log

    @abstractmethod
    def describe(self) -> str:
        """How messages name the target, e.g. ``ext4 UUID=... at /kdumproot``."""

    @abstractmethod
    def prepare(self) -> None:
        """Make the target usable (mounted, reachable); CaptureError if it is not."""

    def host_ip(self) -> str:
        """The address naming the dump directory (127.0.0.1 for local targets)."""
        return "127.0.0.1"

    def make_dump_dir(self, path: str, name: str) -> str:
        """Create ``path`` if needed and in it a new 0700 directory *name* (``<ip>-<date>``),
        or the first free of :func:`layout.fresh_names` if *name* exists: a directory is
        never reused.  It becomes the dump directory; returns the name used."""
        raise NotImplementedError

    def write_file(self, name: str, data: bytes) -> None:
        """Write *name* (0600, replacing our own earlier one) in the dump directory and
        flush it to the target."""
        raise NotImplementedError

    def rename(self, old: str, new: str) -> None:
        raise NotImplementedError

    @abstractmethod
    def save_dump(self, collector: list[str], vmcore: str) -> str:
        """Run the collector into ``vmcore-incomplete``, sync, rename; return the final name."""

    def close(self) -> None:  # noqa: B027 - most targets have nothing to release
        """Release the target (unmount) after the save; errors are only logged."""

    def where(self) -> str:
        """The dump directory as the user will find it (for the final message)."""
        return self.describe()
