"""Which ORC flags layout a kernel uses, from its .orc_header hash or its release."""

from __future__ import annotations

import numpy as np
import pytest

from kdumpy.analysis.orc import (
    TYPE_CALL,
    TYPE_END_OF_STACK,
    TYPE_REGS,
    normalize_flags,
    orc_version,
)


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("4.18.0-240.el8.x86_64", 1),  # RHEL 8
        ("5.10.0-32-cloud-amd64", 1),  # Debian 11
        ("5.14.0-70.13.1.el9_0.x86_64", 1),  # RHEL 9.0
        ("5.14.0-570.12.1.el9_6.x86_64", 3),  # RHEL 9.6: the 6.4 layout backported (>= 517)
        ("6.3.13", 2),  # the signal bit
        ("6.4.0", 3),
        ("6.12.117+deb13-cloud-amd64", 3),
    ],
)
def test_layout_by_release(release, version):
    assert orc_version(release, None) == version


def test_version_1_flags_become_the_newest_layout():
    """4.18..6.2: sp_reg bits 0-3, bp_reg 4-7, type 8-9 (call 0, regs 1), end bit 10."""
    sp_reg, bp_reg = 5, 1  # SP, PREV_SP
    call = sp_reg | bp_reg << 4
    regs = sp_reg | 1 << 8
    end = 1 << 10  # sp_reg UNDEFINED + end: the end of the stack
    out = normalize_flags(np.array([call, regs, end], dtype=np.uint16), 1)
    assert [(int(f) >> 8) & 7 for f in out] == [TYPE_CALL, TYPE_REGS, TYPE_END_OF_STACK]
    assert [int(f) & 0xFF for f in out[:2]] == [call, sp_reg]
    assert [bool(int(f) & 0x800) for f in out] == [False, True, False]  # regs imply signal
