"""x86_64's stack rules: the ORC unwinder (frame pointers without ORC) and crash's
``pt_regs`` frames (see :mod:`kdumpy.arch.stack`)."""

from kdumpy.arch.stack import StackRules
from kdumpy.arch.x86_64 import frames
from kdumpy.arch.x86_64.unwind import OrcStepper

X86_64_STACK = StackRules(
    make_stepper=OrcStepper.for_context,
    regs_block=frames.regs_block,
    from_user_mode=frames.from_user_mode,
    scan_exception_frames=frames.scan_exception_frames,
)
