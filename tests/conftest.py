"""Shared fixtures: real dumps of real kernels, made by kdumpy.lab on first use and cached."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# Foundation first: a run that is cut short has still proved the layers everything rests on.
AREA_ORDER = ("lab", "vmcore", "collect", "analysis", "service", "capture", "e2e", "early")

# CI guard: with KDUMPY_TEST_BUDGET_MIN set, VM tests that would start after that many minutes
# are skipped (and listed as skipped, with the reason) instead of running CI over its limit.
BUDGET_SECONDS = float(os.environ.get("KDUMPY_TEST_BUDGET_MIN", "0")) * 60
START = time.monotonic()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent

    def area(item: pytest.Item) -> int:
        try:
            name = Path(str(item.path)).relative_to(tests_dir).parts[0]
        except ValueError:
            return len(AREA_ORDER)
        return AREA_ORDER.index(name) if name in AREA_ORDER else len(AREA_ORDER)

    items.sort(key=area)  # stable: pytest's own fixture-driven order holds within an area


def pytest_itemcollected(item: pytest.Item) -> None:
    # Anything that needs a lab dump may boot QEMU to make it: that is a VM test.
    if "lab_dump_61" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.vm)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if BUDGET_SECONDS and item.get_closest_marker("vm"):
        used = time.monotonic() - START
        if used > BUDGET_SECONDS:
            pytest.skip(
                f"test time budget used up ({used / 60:.0f} min > "
                f"KDUMPY_TEST_BUDGET_MIN={BUDGET_SECONDS / 60:.0f})"
            )


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
