"""crashkernel= arithmetic as kdump-utils 1.0.61 does it (kdump-lib.sh), case by case.

Every case names the kdump-utils behaviour it checks.  Cases marked ``spec/...:N`` are the
expected values of kdump-utils' own shellspec tests (rhkdump/kdump-utils at tag v1.0.61,
file and line of the Parameters row); the others are worked out from the shell functions
named (the arithmetic is bash's, so the expected values are computed by hand here, not
by kdumpy).
"""

from __future__ import annotations

import pytest

from kdumpy.arch.kdump_select import KDUMP_MACHINES
from kdumpy.service.crashkernel import (
    CrashkernelError,
    crashkernel_add,
    format_memsize,
    parse_crashkernel,
    recommend_size,
    system_size_gib,
    to_bytes,
)
from kdumpy.service.crashkernel_default import (
    Platform,
    auto_table,
    default_crashkernel,
    nr_cpus,
)

M = 1 << 20
G = 1 << 30

ADD_CASES = [
    # (value, delta, expected, what it checks)
    ("2G-4G:256M,4G-64G:320M,64G-:576M", "100M", "2G-4G:356M,4G-64G:420M,64G-:676M",
     "spec/kdump-lib_spec.sh:56 every range's size grows"),
    ("2G-4G:256M", "100", "2G-4G:268435556",
     "spec/kdump-lib_spec.sh:57 bytes kept when not a whole KiB (no rounding)"),
    ("2G-4G:256M,4G-64G:320M,64G-:576M@4G", "100M", "2G-4G:356M,4G-64G:420M,64G-:676M@4G",
     "spec/kdump-lib_spec.sh:58 @offset kept after a range list"),
    ("2G-4G:1G,4G-64G:2G,64G-:3G@4G", "100M", "2G-4G:1124M,4G-64G:2148M,64G-:3172M@4G",
     "spec/kdump-lib_spec.sh:59 G sizes written in M once not whole GiB"),
    ("2G-4G:10000K,4G-64G:20000K,64G-:40000K@4G", "100M",
     "2G-4G:112400K,4G-64G:122400K,64G-:142400K@4G",
     "spec/kdump-lib_spec.sh:60 sub-MiB sizes stay in K"),
    ("1,high", "1", "2,high", "spec/kdump-lib_spec.sh:61 ,high kept; bytes"),
    ("1K,low", "1", "1025,low", "spec/kdump-lib_spec.sh:62 ,low kept; K plus a byte"),
    ("128G-1T:4G", "0", "128G-1T:4G", "spec/kdump-lib_spec.sh:63 T in a range kept as written"),
    ("10T-100T:1T", "0", "10T-100T:1T", "spec/kdump-lib_spec.sh:64 T size written as T"),
    ("128G-1T:4G", "0M", "128G-1T:4G", "spec/kdump-lib_spec.sh:65 0M delta"),
    ("128G-1P:4G", "0M", "128G-1P:4G", "spec/kdump-lib_spec.sh:66 P in a range"),
    ("128G-1E:4G", "0M", "128G-1E:4G", "spec/kdump-lib_spec.sh:67 E in a range"),
    ("1M@1G", "1k", "1025K@1G", "spec/kdump-lib_spec.sh:68 lower-case unit; simple size @offset"),
    ("500M@1G", "-100m", "400M@1G", "spec/kdump-lib_spec.sh:69 negative delta"),
    ("1099511627776", "0", "1T", "spec/kdump-lib_spec.sh:70 bytes written as T"),
    ("1023G", "1G", "1T", "memsize_add: 1024G is written 1T"),
    ("1023T", "1T", "1P", "memsize_add: P"),
    ("1023P", "1P", "1E", "memsize_add: E, the largest unit"),
    ("7E", "0", "7E", "memsize_add: no unit past E"),
    ("256M@16M", "64M", "320M@16M", "_crashkernel_add: simple @offset (reference/service.md)"),
    ("256M,high", "64M", "320M,high", "_crashkernel_add: ,high (reference/service.md)"),
    ("256M,cma", "64M", "320M,cma", "kdumpy: the kernel's ,cma suffix kept like ,high"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "delta", "expected", "what"), ADD_CASES, ids=[c[3] for c in ADD_CASES]
)
def test_crashkernel_add(value: str, delta: str, expected: str, what: str) -> None:
    assert crashkernel_add(value, delta) == expected


BAD_ADD = [
    ("2G-4G:256M.4G-64G:320M", "100M", "spec/kdump-lib_spec.sh:79 '.' is no separator"),
    ("foo", "1", "spec/kdump-lib_spec.sh:80 not a size"),
    ("1", "bar", "spec/kdump-lib_spec.sh:81 delta not a size"),
    ("1.5G", "1M", "is_memsize: decimal digits only"),
    ("2G-4G:256MB", "1M", "is_memsize: one unit letter"),
    ("8E", "0", "past 63 bits (bash's arithmetic would wrap to 0)"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "delta", "what"), BAD_ADD, ids=[c[2] for c in BAD_ADD])
def test_crashkernel_add_rejects(value: str, delta: str, what: str) -> None:
    with pytest.raises(CrashkernelError):
        crashkernel_add(value, delta)


@pytest.mark.parametrize(
    ("text", "n"),
    [("1", 1), ("1K", 1 << 10), ("1m", M), ("3G", 3 * G), ("2T", 2 << 40), ("1P", 1 << 50),
     ("1E", 1 << 60), ("-100m", -100 * M), ("+5K", 5 << 10)],
)  # fmt: skip
def test_to_bytes_units_k_to_e(text: str, n: int) -> None:
    """to_bytes: K, M, G, T, P, E in either case, signed."""
    assert to_bytes(text) == n


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (1023, "1023"), (1024, "1K"), (1025, "1025"), (1536 * M, "1536M"),
     (3 * G + 512 * 1024, "3146240K"), (-1024, "-1K")],
)  # fmt: skip
def test_format_memsize_largest_exact_unit(n: int, text: str) -> None:
    """memsize_add's loop: divide by 1024 while it stays exact; sub-MiB parts are kept."""
    assert format_memsize(n) == text


def _iomem(*sizes: int) -> str:
    lines, start = [], 0x1000
    for size in sizes:
        lines.append(f"{start:08x}-{start + size - 1:08x} : System RAM")
        lines.append(f"  {start:08x}-{start + 0xFFF:08x} : Kernel code")
        start += size + 0x100000
    return "\n".join(lines) + "\n"


BLOCK = "000000-3e800000 : System RAM\n"  # spec/kdump-lib_spec.sh:16: 1000 MiB (+1 byte)


@pytest.mark.parametrize(
    ("iomem", "gib", "what"),
    [
        (BLOCK * 1, 1, "spec/kdump-lib_spec.sh:18 1000M rounds up to 1024M = 1G"),
        (BLOCK * 3, 3, "spec/kdump-lib_spec.sh:19 3000M -> 3072M = 3G"),
        (BLOCK * 6, 5, "spec/kdump-lib_spec.sh:20 6000M -> 6016M, down to 5G"),
        (_iomem(2 * G - 128 * M), 1, "1920M is already 128M-aligned: 1G"),
        (_iomem(2 * G - 129 * M), 1, "1919M rounds to 1920M: still 1G"),
        (_iomem(2 * G - 127 * M), 2, "1921M rounds up to 2048M: 2G"),
        (_iomem(2 * G - M + 1), 2, "whole MiB only: 2047M -> 2G"),
        (_iomem(G, G), 2, "ranges summed, nested lines ignored"),
        ("", 0, "no System RAM"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)
def test_system_size_gib(iomem: str, gib: int, what: str) -> None:
    """get_system_size: MiB floor, rounded up to 128M like kernel/crash_reserve.c, then GiB."""
    assert system_size_gib(iomem) == gib


SPEC_TABLE = "4G-64G:256M,2G-4G:192M,64G-1T:512M,1T-:12345M"  # spec/kdump-lib_spec.sh:38


@pytest.mark.parametrize(
    ("gib", "table", "size", "what"),
    [
        (1, SPEC_TABLE, "0M", "spec/kdump-lib_spec.sh:40 below every range: 0M"),
        (2, SPEC_TABLE, "192M", "spec/kdump-lib_spec.sh:41 start inclusive, unsorted table"),
        (64, SPEC_TABLE, "512M", "spec/kdump-lib_spec.sh:42 end exclusive"),
        (1024, SPEC_TABLE, "12345M", "spec/kdump-lib_spec.sh:43 T start"),
        (64 * 1024, SPEC_TABLE, "12345M", "spec/kdump-lib_spec.sh:44 open end"),
        (1, "2G-64G:256M,64G-:512M", "0M", "x86_64 default: no reservation under 2G"),
        (63, "2G-64G:256M,64G-:512M", "256M", "x86_64 default just below 64G"),
        (3, "2G-4G:1124M", "1124M", "size returned as written"),
    ],
)
def test_recommend_size(gib: int, table: str, size: str, what: str) -> None:
    """get_recommend_size: a table not covering the machine gives 0M, never an error."""
    assert recommend_size(gib, table) == size


DEFAULT_CASES = [
    (Platform("x86_64"), "2G-64G:256M,64G-:512M",
     "x86_64 base table (kdump_get_arch_recommend_crashkernel; spec reset tests use it)"),
    (Platform("x86_64", sme_sev=True), "2G-64G:320M,64G-:576M", "x86_64 + 64M for SME/SEV"),
    (Platform("s390x"), "2G-64G:256M,64G-:512M", "s390x shares x86_64's table"),
    (Platform("aarch64", "5.14.0-322.el9.aarch64"), "2G-4G:256M,4G-64G:320M,64G-:576M",
     "aarch64 4K base"),
    (Platform("aarch64", "5.14.0-322.el9.aarch64", mlx5=True),
     "2G-4G:406M,4G-64G:470M,64G-:726M", "aarch64 4K + 150M for mlx5"),
    (Platform("aarch64", "5.14.0-316.el9.aarch64+64k"), "2G-4G:356M,4G-64G:420M,64G-:676M",
     "aarch64 64K +100M (the values kdump-lib.sh's comment gives)"),
    (Platform("aarch64", "5.14.0-316.el9.aarch64+64k", arm_smmu=True, mlx5=True),
     "2G-4G:940M,4G-64G:1004M,64G-:1260M", "aarch64 64K +100M +384M SMMU +200M mlx5"),
    (Platform("ppc64le"), "2G-4G:385M,4G-16G:513M,16G-64G:1025M,64G-128G:2049M,128G-:4097M",
     "ppc64le kdump: +1M per capture CPU (nr_cpus=1 when not set)"),
    (Platform("ppc64le", nr_cpus=16),
     "2G-4G:400M,4G-16G:528M,16G-64G:1040M,64G-128G:2064M,128G-:4112M",
     "ppc64le with the template's nr_cpus=16 (reference/service.md)"),
    (Platform("ppc64le", dump_mode="fadump", nr_cpus=16),
     "4G-16G:784M,16G-64G:1040M,64G-128G:2064M,128G-1T:4112M,1T-2T:6160M,2T-4T:12304M,"
     "4T-8T:20496M,8T-16T:36880M,16T-32T:65552M,32T-64T:131088M,64T-:184336M",
     "ppc64le fadump table"),
]  # fmt: skip


@pytest.mark.parametrize(("platform", "expected", "what"), DEFAULT_CASES,
                         ids=[c[2] for c in DEFAULT_CASES])  # fmt: skip
def test_default_crashkernel(platform: Platform, expected: str, what: str) -> None:
    assert default_crashkernel(platform) == expected


def test_no_default_for_other_arches() -> None:
    """kdump-utils has no table for riscv64 (it would print nothing); kdumpy says so."""
    with pytest.raises(CrashkernelError, match="riscv64"):
        default_crashkernel(Platform("riscv64"))


@pytest.mark.parametrize(
    ("append", "cpus"),
    [("irqpoll nr_cpus=16 reset_devices", 16), ("nr_cpus=4 nr_cpus=8", 8), ("", 1),
     ("nr_cpus=0", 1), ("nr_cpus=08", 1), ("nr_cpus=x", 1), ("maxcpus=4", 1)],
)  # fmt: skip
def test_find_nr_cpus(append: str, cpus: int) -> None:
    """find_nr_cpus: the last strictly positive decimal nr_cpus= word, else 1."""
    assert nr_cpus(append) == cpus


@pytest.mark.parametrize(
    ("arch", "ram", "size"),
    [("x86_64", 768 * M, 0), ("x86_64", 2 * G, 160 * M), ("x86_64", 8 * G, 192 * M),
     ("x86_64", 128 * G, 256 * M), ("x86_64", 2 << 40, 512 * M), ("aarch64", G, 0),
     ("aarch64", 4 * G, 448 * M), ("ppc64le", 8 * G, 512 * M), ("s390x", 2 * G, 160 * M)],
)  # fmt: skip
def test_crashkernel_auto_as_rhel8_kernels_read_it(arch: str, ram: int, size: int) -> None:
    """crashkernel=auto: what a RHEL 8 kernel reserved on each architecture."""
    assert parse_crashkernel("auto", auto_table(arch)).size_for(ram) == size


def test_crashkernel_auto_elsewhere_is_a_clear_error() -> None:
    with pytest.raises(CrashkernelError, match="only RHEL 8 kernels"):
        parse_crashkernel("auto")
    assert auto_table("ppc64le", "fadump").startswith("4G-16G:768M")
    with_auto = {name for name, m in KDUMP_MACHINES.items() if m.crashkernel_auto}
    assert with_auto == {"x86_64", "s390x", "aarch64", "ppc64le"}
    with pytest.raises(CrashkernelError, match="never defined for riscv64"):
        auto_table("riscv64")
