"""End-to-end kdump in the lab's Debian guest: boot, kdumpy start, crash, capture, check.

Each test is one full QEMU run (first kernel, crash, capture kernel), several minutes
under TCG.  Kernels: ``KDUMPY_E2E_KERNELS`` (default "6.1"), every lab kernel with --full.
"""

from __future__ import annotations

import os

import pytest

from kdumpy.lab.netlab import LabNet

from .helpers import ALL_KERNELS

# CI's core set runs on KDUMPY_E2E_KERNELS (6.1); the full matrix (--full) adds every lab kernel.
E2E_KERNELS = tuple(os.environ.get("KDUMPY_E2E_KERNELS", "6.1").split(","))


def _kernel_param(version: str):
    marks = [pytest.mark.vm, pytest.mark.slow]
    if version not in E2E_KERNELS:
        marks.append(pytest.mark.full)
    return pytest.param(version, marks=marks)


@pytest.fixture(params=[_kernel_param(k) for k in dict.fromkeys(E2E_KERNELS + ALL_KERNELS)])
def kernel(request):
    from kdumpy.lab.kernels import get_kernel

    return get_kernel(request.param)


@pytest.fixture
def labnet():
    """The lab network of the netstack tests: a VLAN-10 trunk relay in a namespace of
    its own, the server's addresses on its tap."""
    with LabNet() as net:
        yield net
