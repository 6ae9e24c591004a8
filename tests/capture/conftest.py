"""Fixtures for the capture-side tests (see helpers.py)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def dump_61(lab_dump_61):
    """The 6.1 lab guest's /proc/vmcore (ELF) and its serial console log."""
    return lab_dump_61


@pytest.fixture
def makedumpfile() -> str:
    path = shutil.which("makedumpfile")
    if path is None:
        pytest.skip("makedumpfile not installed")
    return path
