"""kdumpy estimate: the kernel image's in-memory size, measured independently with the
zstd tool and binutils' readelf on the lab kernels, and the kdump-utils formula."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kdumpy.arch.x86_64.image import bzimage_payload
from kdumpy.errors import KdumpyError
from kdumpy.service.crashkernel import MiB
from kdumpy.service.estimate import (
    estimate,
    kernel_size,
    luks_size,
    proc_modules,
    render,
)


def _readelf_load_memsz(elf: Path) -> int:
    out = subprocess.run(
        ["readelf", "-lW", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    total = 0
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD":
            total += int(fields[5], 16)  # Type Offset VirtAddr PhysAddr FileSiz MemSiz
    return total


@pytest.mark.parametrize("series", ["6.12", "7"])
def test_kernel_size_matches_readelf(series: str, tmp_path: Path) -> None:
    """Decompress the bzImage payload with the zstd tool and sum PT_LOAD with readelf."""
    if not (shutil.which("zstd") and shutil.which("readelf")):
        pytest.skip("zstd or binutils missing")
    from kdumpy.lab.kernels import get_kernel

    vmlinuz = get_kernel(series).vmlinuz
    payload, method = bzimage_payload(vmlinuz.read_bytes())
    assert method == "zstd"
    elf = tmp_path / "vmlinux"
    proc = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True)
    elf.write_bytes(proc.stdout)  # trailing bytes after the frame make zstd complain
    size, how = kernel_size(vmlinuz)
    assert how.startswith("vmlinux PT_LOAD")
    assert size == _readelf_load_memsz(elf)


def test_lz4_kernel_falls_back_to_init_size() -> None:
    from kdumpy.lab.kernels import get_kernel

    vmlinuz = get_kernel("6.1").vmlinuz
    size, how = kernel_size(vmlinuz)
    assert "init_size" in how and "lz4" in how
    assert 16 * MiB < size < 128 * MiB


def test_formula_and_report(tmp_path: Path) -> None:
    from kdumpy.lab.kernels import get_kernel

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"\0" * (20 * MiB))
    loaded = proc_modules("virtio_blk 24576 2 - Live 0x0\nbig 2097152 0 - Live 0x0\n")
    est = estimate(
        system_gib=4,
        default_crashkernel="2G-64G:256M,64G-:512M",
        reserved=192 * MiB,
        vmlinuz=get_kernel("6.12").vmlinuz,
        initramfs=initrd,
        modules=["virtio_blk", "big", "absent"],
        loaded_modules=loaded,
    )
    assert est.modules == 24576 + 2097152
    assert est.estimated == est.kernel + est.modules + 3 * 20 * MiB + 16 * MiB
    assert est.baseline == 256 * MiB  # kdump-utils x86_64 default for 4G
    assert est.recommended == max(est.baseline, est.estimated)
    lines = render(est)
    assert lines[0] == "Reserved crashkernel:    192M"
    assert re.match(r"Recommended crashkernel: \d+M", lines[1])
    assert "    big: 2097152" in lines
    assert lines[-1].startswith("WARNING: Current crashkernel size is lower than recommended")


def test_small_machine_baseline_is_zero(tmp_path: Path) -> None:
    """kdumpctl estimate on a 1 GiB machine: the default table has no range for it, so the
    baseline is 0M (get_recommend_size) and the estimate alone decides."""
    from kdumpy.lab.kernels import get_kernel

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"\0" * MiB)
    est = estimate(1, "2G-64G:256M,64G-:512M", 0, get_kernel("6.12").vmlinuz, initrd, [], {})
    assert est.baseline == 0
    assert est.recommended == est.estimated


# cryptsetup luksDump output, trimmed to what the estimate reads (LUKS2 keyslots).
LUKS2 = """LUKS header information
Version:       	2
Keyslots:
  0: luks2
	Key:        512 bits
	PBKDF:      argon2id
	Memory:     1048576
  1: luks2
	PBKDF:      argon2id
	Memory:     262144
"""
LUKS1 = "LUKS header information for /dev/vdb\n\nVersion:       \t1\nCipher name:   \taes\n"


@pytest.mark.parametrize(
    ("dumps", "arch", "size"),
    [
        ([LUKS2], "x86_64", 1024 * MiB + 20 * MiB),  # largest keyslot + cryptsetup's 20M
        ([LUKS2], "aarch64", 1024 * MiB + 50 * MiB),  # 50M on aarch64
        ([LUKS2, LUKS2], "x86_64", 2048 * MiB + 20 * MiB),  # per volume; overhead once
        ([LUKS1], "x86_64", 0),  # LUKS1: no Argon2 memory, nothing added
        ([], "x86_64", 0),
    ],
)
def test_luks_size_as_kdumpctl_estimate(dumps: list[str], arch: str, size: int) -> None:
    assert luks_size(dumps, arch) == size


def test_storage_stack_from_the_manifest(tmp_path: Path) -> None:
    """The manifest's stack (recorded by kdumpy rebuild): LUKS memory is added to the
    estimate as kdumpctl's crypt_size, the layers and their tools' bytes are shown."""
    from kdumpy.lab.kernels import get_kernel

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"\0" * MiB)
    stack = {"layers": ["md raid1 /dev/md0 (UUID u)", "LVM thin volume vgk/crash",
                        "LUKS volume kdumpcrypt (UUID=x)"],
             "tool_bytes": 6 * MiB + 1, "luks_memory": 84 * MiB}  # fmt: skip
    args = (1, "2G-64G:256M,64G-:512M", 0, get_kernel("6.12").vmlinuz, initrd, [], {})
    plain = estimate(*args)
    est = estimate(*args, stack=stack)
    assert est.estimated == plain.estimated + 84 * MiB
    lines = render(est)
    assert "LUKS required size:  84M" in lines
    assert (
        "Storage stack:       md raid1 /dev/md0 (UUID u), LVM thin volume vgk/crash, "
        "LUKS volume kdumpcrypt (UUID=x) (tools 7M of the unpacked initramfs)"
    ) in lines
    assert not any(line.startswith("Storage stack") for line in render(plain))
    assert not any(line.startswith("Stack runtime") for line in lines)
    # NVMe/TCP: no tool, a plan and the kernel modules (recorded since; shown when there).
    nvme = {"layers": ["NVMe/TCP namespace 1 of nqn.2026-12.org.kdumpy:x at 10.0.2.2:4420"],
            "tool_bytes": 412, "module_bytes": 2 * MiB + 5}  # fmt: skip
    assert ("Storage stack:       NVMe/TCP namespace 1 of nqn.2026-12.org.kdumpy:x at "
            "10.0.2.2:4420 (tools 1M, kernel modules 3M of the unpacked initramfs)"
            ) in render(estimate(*args, stack=nvme))  # fmt: skip


@pytest.mark.vm  # the arm64 kernel and its dbg package: downloads, no guest
def test_arm64_image_size_is_text_to_end_of_the_dbg_vmlinux() -> None:
    """The estimate reads an arm64 Image's header; nm on the vmlinux says what it spans."""
    from kdumpy.lab.kernels import get_kernel

    kernel = get_kernel("arm64-6.1")
    size, how = kernel_size(kernel.vmlinuz)
    nm = subprocess.run(["nm", str(kernel.dbg_vmlinux())], capture_output=True, text=True)
    symbols = {f[2]: int(f[0], 16) for f in map(str.split, nm.stdout.splitlines()) if len(f) == 3}
    assert how == "arm64 Image image_size"
    assert size == symbols["_end"] - symbols["_text"]


def test_image_kinds_by_their_headers(tmp_path: Path) -> None:
    """An arm64 Image header built here; anything else is one line naming the file."""
    header = struct.pack("<IIQQQQQQ4sI", 0, 0, 0, 3 << 20, 2, 0, 0, 0, b"ARM\x64", 0)
    image = tmp_path / "Image"
    image.write_bytes(header + bytes((2 << 20) - len(header)))
    assert kernel_size(image) == (3 << 20, "arm64 Image image_size")
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(KdumpyError, match=r"junk: neither an ELF vmlinux, an x86 bzImage"):
        kernel_size(junk)


def test_stack_runtime_memory_is_added(tmp_path: Path) -> None:
    """A RAID5's stripe cache (recorded by kdumpy rebuild as stack_memory) is memory the
    capture kernel holds during the dump: added to the estimate and shown."""
    from kdumpy.lab.kernels import get_kernel

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"\0" * MiB)
    args = (1, "2G-64G:256M,64G-:512M", 0, get_kernel("6.12").vmlinuz, initrd, [], {})
    stack = {"layers": ["md raid5 /dev/md0 (UUID u)"], "tool_bytes": MiB,
             "stack_memory": 3 * MiB}  # fmt: skip
    est = estimate(*args, stack=stack)
    assert est.estimated == estimate(*args).estimated + 3 * MiB
    assert "Stack runtime:       3M (md stripe caches)" in render(est)
