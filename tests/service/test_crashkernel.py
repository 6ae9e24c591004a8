"""crashkernel= against the kernel's documented grammar (kernel-parameters.txt, kdump.rst)
and kdump-utils' examples.  The kernel's own reading is checked in test_initramfs.py
(kexec_crash_size in a booted guest)."""

from __future__ import annotations

import pytest

from kdumpy.arch.x86_64.kdump import X86_64_KDUMP
from kdumpy.service.crashkernel import (
    CrashkernelError,
    add_size,
    memparse,
    parse_crashkernel,
    reservation,
    system_ram_from_iomem,
)

M = 1 << 20
G = 1 << 30


@pytest.mark.parametrize(
    ("text", "value", "rest"),
    [("64M", 64 * M, ""), ("0x1000", 4096, ""), ("1G@", G, "@"), ("010", 8, ""), ("2k", 2048, "")],
)
def test_memparse(text: str, value: int, rest: str) -> None:
    assert memparse(text) == (value, rest)


def test_simple_and_offset() -> None:
    ck = parse_crashkernel("128M@16M")
    assert (ck.size, ck.offset, ck.suffix) == (128 * M, 16 * M, None)
    assert ck.size_for(8 * G) == 128 * M


@pytest.mark.parametrize(
    ("ram", "size"),
    [
        (256 * M, 0),  # below the first range: nothing (kdump.rst)
        (512 * M, 64 * M),  # start is inclusive
        (2 * G - 1, 128 * M),  # rounded up to 128 MiB first: 2G is in the next range
        (2 * G - 200 * M, 64 * M),
        (2 * G, 128 * M),  # end is exclusive
        (64 * G, 128 * M),
    ],
)
def test_ranges_as_in_kdump_rst(ram: int, size: int) -> None:
    assert parse_crashkernel("512M-2G:64M,2G-:128M").size_for(ram) == size


def test_kdump_utils_default_table() -> None:
    ck = parse_crashkernel(X86_64_KDUMP.crashkernel_table or "")
    assert ck.size_for(G + 512 * M) == 0  # under 2G: no default reservation since 2025
    assert ck.size_for(4 * G) == 256 * M
    assert ck.size_for(64 * G) == 512 * M


def test_range_size_not_below_ram_is_rejected() -> None:
    with pytest.raises(CrashkernelError, match="invalid size"):
        parse_crashkernel("0-:1G").size_for(512 * M)


def test_range_offset() -> None:
    ck = parse_crashkernel("1G-4G:96M@16M")
    assert (ck.offset, ck.size_for(2 * G)) == (16 * M, 96 * M)


@pytest.mark.parametrize("suffix", ["high", "low", "cma"])
def test_suffixes(suffix: str) -> None:
    ck = parse_crashkernel(f"256M,{suffix}")
    assert (ck.size, ck.suffix) == (256 * M, suffix)


@pytest.mark.parametrize(
    "bad", ["", "abc", "64M@", "2G-1G:64M", "512M-2G", "64M,middle", "1G-2G:64Mx", "64M,high@1G"]
)
def test_rejected(bad: str) -> None:
    with pytest.raises(CrashkernelError):
        parse_crashkernel(bad)


def test_reservation_precedence() -> None:
    # A plain crashkernel= makes the kernel ignore ,high and ,low.
    r = reservation("crashkernel=256M crashkernel=1G,high crashkernel=64M,low", 8 * G)
    assert (r.size, r.high, r.low) == (256 * M, False, 0)
    # ,high alone: x86 adds 256 MiB low by itself; ,low overrides it.
    assert reservation("crashkernel=1G,high", 8 * G).low == 256 * M
    assert reservation("crashkernel=1G,high", 8 * G, "aarch64").low == 128 * M
    r = reservation("crashkernel=1G,high crashkernel=64M,low", 8 * G)
    assert (r.size, r.high, r.low, r.total) == (G, True, 64 * M, G + 64 * M)
    # The last one of a kind wins.
    assert reservation("crashkernel=64M crashkernel=128M", 8 * G).size == 128 * M
    assert reservation("quiet", 8 * G).size == 0
    assert reservation("crashkernel=256M crashkernel=64M,cma", 8 * G).cma == 64 * M


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # kdump-utils' _crashkernel_add examples.
        ("256M@16M", "320M@16M"),
        ("256M,high", "320M,high"),
        ("1G-4G:192M,4G-64G:256M,64G-:512M", "1G-4G:256M,4G-64G:320M,64G-:576M"),
    ],
)
def test_add_size_keeps_form(before: str, after: str) -> None:
    assert add_size(before, 64 * M) == after


def test_system_ram_from_iomem() -> None:
    iomem = (
        "00000000-00000fff : Reserved\n"
        "00001000-0009fbff : System RAM\n"
        "00100000-bfffffff : System RAM\n"
        "  01000000-0220bb07 : Kernel code\n"
        "100000000-13fffffff : System RAM\n"
    )
    assert system_ram_from_iomem(iomem) == (0x9FC00 - 0x1000) + (0xC0000000 - 0x100000) + G
