"""What a collection is asked to do (makedumpfile's options), shared by its writers."""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_CYCLIC_KIB = 16 * 1024  # packed 2nd bitmap kept between passes: 512 GiB of RAM

Progress = Callable[[str, int, int], None]


class CollectOptions:
    """makedumpfile's options that change what is written.  (Plain classes on the
    collector's import path, not dataclasses: importing dataclasses costs more than the
    rest of the start-up, and start-up is downtime in a capture kernel.)"""

    def __init__(
        self,
        dump_levels: list[int] | None = None,
        compression: str = "none",
        flat: bool = False,
        elf: bool = False,
        num_threads: int = 0,
        cyclic_buffer_kib: int = DEFAULT_CYCLIC_KIB,
        progress: Progress | None = None,
    ) -> None:
        self.dump_levels = [31] if dump_levels is None else dump_levels
        self.compression = compression
        self.flat = flat
        self.elf = elf
        self.num_threads = num_threads
        self.cyclic_buffer_kib = cyclic_buffer_kib
        self.progress = progress

    @property
    def dump_level(self) -> int:
        return self.dump_levels[0]
