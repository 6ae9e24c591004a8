"""End-to-end kdump in the lab's Debian guest: boot, kdumpy start, crash, capture, check.

Each test is one full QEMU run (first kernel, crash, capture kernel), several minutes
under TCG.  Kernels: ``KDUMPY_E2E_KERNELS`` (default "6.1").
"""

from __future__ import annotations

import os

import pytest

E2E_KERNELS = tuple(os.environ.get("KDUMPY_E2E_KERNELS", "6.1").split(","))


@pytest.fixture(params=[pytest.param(k, marks=[pytest.mark.vm, pytest.mark.slow])
                        for k in E2E_KERNELS])  # fmt: skip
def kernel(request):
    from kdumpy.lab.kernels import get_kernel

    return get_kernel(request.param)
