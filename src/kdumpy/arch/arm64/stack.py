"""arm64's stack rules: frame records and ``pt_regs`` by entry text or metadata record,
and crash's PC/LR/SP frames (see :mod:`kdumpy.arch.stack`)."""

from kdumpy.arch.arm64 import frames
from kdumpy.arch.arm64.unwind import Arm64Stepper
from kdumpy.arch.stack import StackRules

ARM64_STACK = StackRules(
    make_stepper=Arm64Stepper.for_context,
    regs_block=frames.regs_block,
    from_user_mode=frames.from_user_mode,
    scan_exception_frames=frames.scan_exception_frames,
)
