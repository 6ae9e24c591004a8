"""Shared fixtures: real dumps of real kernels, made by kdumpy.lab on first use and cached."""

from __future__ import annotations

import os

import pytest

LAB_KERNELS = tuple(os.environ.get("KDUMPY_LAB_KERNELS", "6.1,6.12,7").split(","))


@pytest.fixture(
    scope="session", params=[pytest.param(k, marks=pytest.mark.vm) for k in LAB_KERNELS]
)
def lab_dump(request: pytest.FixtureRequest):
    """A 1 GiB guest of each lab kernel, crashed by sysrq, with its ELF /proc/vmcore."""
    from kdumpy.lab.dumps import lab_dump as make

    return make(request.param)


@pytest.fixture(scope="session")
def lab_dump_61():
    """The 6.1 lab dump alone, for tests that need one real dump but not every kernel."""
    from kdumpy.lab.dumps import lab_dump as make

    return make("6.1")
