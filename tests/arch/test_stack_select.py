"""Every machine kdumpy reads has stack rules, and they are that machine's own."""

from __future__ import annotations

import pytest

from kdumpy.arch.arm64 import frames as arm64_frames
from kdumpy.arch.arm64.unwind import Arm64Stepper
from kdumpy.arch.select import ARCHITECTURES
from kdumpy.arch.stack_select import stack_rules
from kdumpy.arch.x86_64 import frames as x86_frames
from kdumpy.arch.x86_64.unwind import OrcStepper

OWN = {
    "x86_64": (OrcStepper.for_context, x86_frames.regs_block),
    "arm64": (Arm64Stepper.for_context, arm64_frames.regs_block),
}


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_each_architecture_has_its_own_stack_rules(arch) -> None:  # noqa: ANN001
    rules = stack_rules(arch)
    assert (rules.make_stepper, rules.regs_block) == OWN[arch.name]
