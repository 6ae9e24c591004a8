"""Which :class:`StackRules` an :class:`Architecture` has, and the unwinding names the
analysis layer imports (see :mod:`kdumpy.arch.stack`)."""

from kdumpy.arch.arm64.machine import ARM64
from kdumpy.arch.arm64.stack import ARM64_STACK
from kdumpy.arch.select import Architecture
from kdumpy.arch.stack import (
    FunctionSymbol,
    KernelView,
    StackRules,
    Stepper,
    TaskAccess,
    UnwindContext,
    UnwindStep,
)
from kdumpy.arch.x86_64.machine import X86_64
from kdumpy.arch.x86_64.stack import X86_64_STACK

__all__ = [
    "FunctionSymbol",
    "KernelView",
    "StackRules",
    "Stepper",
    "TaskAccess",
    "UnwindContext",
    "UnwindStep",
    "stack_rules",
]

STACKS = {X86_64.name: X86_64_STACK, ARM64.name: ARM64_STACK}


def stack_rules(arch: Architecture) -> StackRules:
    """The unwinding and exception frames of *arch* (every architecture has them)."""
    return STACKS[arch.name]
