"""What a machine's stack unwinding answers, apart from its :class:`Architecture`.

``bt`` needs a machine's unwinder and its exception frames; reading, translating and
collecting a dump need neither, so they live in this record and not in
:class:`~kdumpy.arch.base.Architecture`: ``kdumpy collect`` (the capture kernel's
collector, while the machine is down) does not load the unwinders of every machine at
start-up.  :mod:`kdumpy.arch.stack_select` gives an architecture's :class:`StackRules`.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from kdumpy.arch.base import VmcoreInfoLookup


class KernelView(Protocol):
    """Kernel virtual memory (reads raise a KdumpyError where it is not in the dump)."""

    def read(self, address: int, size: int) -> bytes: ...
    def u64(self, address: int) -> int: ...


class FunctionSymbol(Protocol):
    """A function symbol: where it starts."""

    @property
    def address(self) -> int: ...


class UnwindStep(NamedTuple):
    """One unwound frame: the caller's registers and how they were found."""

    regs: dict[str, int]
    interrupted: bool  # the caller's pc is where it stopped, not a return address
    slot: int  # where the caller's pc was found
    exc_regs: dict[str, int] | None  # the exception frame crossed, if any
    user: bool  # that frame came from user mode: the end of the kernel stack
    left_irq_stack: bool = False


class TaskAccess(Protocol):
    """A sleeping task's saved context, as the analysis layer reads it (BTF types)."""

    def member_value(self, path: str) -> int:
        """``task.<path>`` as an integer (``"thread.sp"``)."""
        ...

    def member_address(self, path: str) -> int:
        """Where ``task.<path>`` lies (``"thread.cpu_context"``)."""
        ...

    def struct_layout(self, name: str) -> tuple[int, dict[str, int]]:
        """Size and member offsets of a struct (``"struct inactive_task_frame"``)."""
        ...

    def read(self, address: int, size: int) -> bytes: ...


class UnwindContext(NamedTuple):
    """What a machine's unwinder may ask of the analysis layer."""

    memory: KernelView
    find_symbol: Callable[[int], FunctionSymbol | None]
    symbol_address: Callable[[str], int | None]
    member_offset: Callable[[str, str], int | None]  # BTF: ("struct pt_regs", "stackframe")
    vmcoreinfo: VmcoreInfoLookup
    find_orc_entry: Callable[[int], Any]  # x86_64's ORC tables (None: no entry)
    has_orc: Callable[[], bool]


class Stepper(Protocol):
    """One machine's unwinding: a step, and where a sleeping task starts."""

    def step(self, regs: dict[str, int], interrupted: bool) -> UnwindStep | None: ...
    def task_start(self, task: TaskAccess) -> tuple[dict[str, int], int]:
        """A sleeping task's registers and the slot its pc was found in."""
        ...


class StackRules(NamedTuple):
    """One machine's unwinding and ``bt``'s exception frames."""

    make_stepper: Callable[[UnwindContext], Stepper]
    # bt's exception frames: crash's register block, entry from user mode, and the
    # search for saved registers on a stack (words from an address, is_text(pc))
    regs_block: Callable[[dict[str, int], str], str]
    from_user_mode: Callable[[dict[str, int]], bool]
    scan_exception_frames: Callable[
        [Sequence[int], int, Callable[[int], bool]], list[tuple[int, dict[str, int]]]
    ]
