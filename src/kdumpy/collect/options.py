"""What a collection is asked to do (makedumpfile's options), shared by its writers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_CYCLIC_KIB = 16 * 1024  # packed 2nd bitmap kept between passes: 512 GiB of RAM

Progress = Callable[[str, int, int], None]


@dataclass
class CollectOptions:
    """makedumpfile's options that change what is written."""

    dump_levels: list[int] = field(default_factory=lambda: [31])
    compression: str = "none"
    flat: bool = False
    elf: bool = False
    num_threads: int = 0
    cyclic_buffer_kib: int = DEFAULT_CYCLIC_KIB
    progress: Progress | None = None

    @property
    def dump_level(self) -> int:
        return self.dump_levels[0]
