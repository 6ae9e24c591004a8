"""Finding the capture kernel as kdumpctl's prepare_kdump_kernel does, unified kernel images
built with binutils (objcopy, the way UKIs were made before ukify) and read back."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from kdumpy.errors import KdumpyError
from kdumpy.service.kernels import (
    Lookup,
    boot_image,
    find_kernel,
    kdump_kernel_version,
    kernel_for_kexec,
    kver_from_path,
    pe_sections,
    uki_section,
)

MID = "e986846f63134c7295458cf36300ba5b"
KVER = "6.12.0-55.el10.x86_64"


def _lookup(boot: Path, cmdline: str = "ro quiet") -> Lookup:
    return Lookup(boot_dirs=(boot, boot / "efi"), machine_id=MID, cmdline=cmdline)


@pytest.mark.parametrize(
    ("files", "cmdline", "found", "what"),
    [
        ([f"vmlinuz-{KVER}"], "ro", f"vmlinuz-{KVER}", "<KDUMP_IMG>-<release>"),
        ([f"{MID}/{KVER}/linux"], "ro", f"{MID}/{KVER}/linux", "BLS <machine-id>/<kver>/linux"),
        ([f"{MID}/{KVER}/vmlinuz"], "ro", f"{MID}/{KVER}/vmlinuz", "<machine-id>/<kver>/KDUMP_IMG"),
        ([f"efi/EFI/Linux/{MID}-{KVER}.efi"], "ro", f"efi/EFI/Linux/{MID}-{KVER}.efi",
         "UKI EFI/Linux/<machine-id>-<kver>.efi under /boot/efi"),
        ([f"vmlinuz-{KVER}", f"alt/vmlinuz-{KVER}"], f"BOOT_IMAGE=(hd0,gpt2)/alt/vmlinuz-{KVER} ro",
         f"alt/vmlinuz-{KVER}", "BOOT_IMAGE first, GRUB device prefix stripped"),
        ([f"vmlinuz-{KVER}", "alt/vmlinuz-6.1.0"], "BOOT_IMAGE=/alt/vmlinuz-6.1.0 ro",
         f"vmlinuz-{KVER}", "BOOT_IMAGE of another release ignored"),
        ([f"{MID}/{KVER}/linux", f"vmlinuz-{KVER}"], "ro", f"vmlinuz-{KVER}",
         "vmlinuz-<kver> before the BLS layout"),
    ],
)  # fmt: skip
def test_find_kernel_order(tmp_path: Path, files, cmdline, found, what) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"kernel")
    assert find_kernel(KVER, _lookup(tmp_path, cmdline)) == tmp_path / found


def test_no_kernel_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(KdumpyError, match=f"no kernel image found for {KVER}"):
        find_kernel(KVER, _lookup(tmp_path))


def test_boot_image_prefix() -> None:
    assert boot_image("BOOT_IMAGE=(hd0,msdos1)/vmlinuz-6.1 ro") == "/vmlinuz-6.1"
    assert boot_image("BOOT_IMAGE=/boot/vmlinuz-6.1 ro") == "/boot/vmlinuz-6.1"
    assert boot_image("ro quiet") is None


def test_debug_kernel_prefers_its_plain_twin(tmp_path: Path) -> None:
    """_get_kdump_kernel_version: +debug/-debug falls back to the plain release if installed."""
    (tmp_path / "6.12.0").mkdir()
    (tmp_path / "6.12.0/modules.dep").write_text("")
    assert kdump_kernel_version("", "6.12.0+debug", tmp_path) == "6.12.0"
    assert kdump_kernel_version("", "6.13.0-debug", tmp_path) == "6.13.0-debug"
    assert kdump_kernel_version("6.1.0", "6.12.0+debug", tmp_path) == "6.1.0"


def test_kver_from_path(tmp_path: Path) -> None:
    """parse_kver_from_path: vmlinuz-<kver>, <token>/<kver>/linux, <token>-<kver>.efi."""
    for kver in ("6.1.0", "6.2.0", "6.3.0+64k"):
        (tmp_path / kver).mkdir()
        (tmp_path / kver / "modules.dep").write_text("")
    assert kver_from_path("/boot/vmlinuz-6.1.0", MID, tmp_path) == "6.1.0"
    assert kver_from_path(f"/boot/efi/{MID}/6.2.0/linux", MID, tmp_path) == "6.2.0"
    assert kver_from_path(f"/efi/EFI/Linux/{MID}-6.3.0+64k.efi", MID, tmp_path) == "6.3.0+64k"
    assert kver_from_path("/boot/vmlinuz-9.9", MID, tmp_path) is None


def _build_uki(tmp: Path, linux: bytes, cmdline: bytes) -> Path:
    """A PE stub from binutils, then .linux/.cmdline added with objcopy."""
    if not all(shutil.which(t) for t in ("as", "ld", "objcopy", "objdump")):
        pytest.skip("binutils missing")
    (tmp / "s.s").write_text(".text\n.globl _start\n_start: ret\n")
    (tmp / "linux.bin").write_bytes(linux)
    (tmp / "cmdline.txt").write_bytes(cmdline)
    run = [
        ["as", str(tmp / "s.s"), "-o", str(tmp / "s.o")],
        ["ld", "-e", "_start", "-o", str(tmp / "stub.elf"), str(tmp / "s.o")],
        ["objcopy", "-O", "pei-x86-64", str(tmp / "stub.elf"), str(tmp / "stub.efi")],
        ["objcopy", "--add-section", f".linux={tmp / 'linux.bin'}",
         "--change-section-vma", ".linux=0x2000000",
         "--add-section", f".cmdline={tmp / 'cmdline.txt'}",
         "--change-section-vma", ".cmdline=0x30000",
         str(tmp / "stub.efi"), str(tmp / "uki.efi")],
    ]  # fmt: skip
    for cmd in run:
        subprocess.run(cmd, check=True, capture_output=True)
    return tmp / "uki.efi"


def _objdump_sections(path: Path) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["objdump", "-h", str(path)], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 7 and f[0].isdigit():
            found[f[1]] = (int(f[5], 16), int(f[2], 16))  # file offset, size
    return found


def test_uki_sections_match_objdump(tmp_path: Path) -> None:
    linux = os.urandom(100_001)  # not a multiple of the file alignment: raw size is padded
    uki = _build_uki(tmp_path, linux, b"root=/dev/vda ro")
    sections = pe_sections(uki.read_bytes())
    for name, (offset, size) in _objdump_sections(uki).items():
        assert (sections[name].offset, sections[name].size) == (offset, size), name
    assert uki_section(uki, ".linux") == linux
    assert uki_section(uki, ".cmdline") == b"root=/dev/vda ro"


def test_uki_kernel_copied_out_private(tmp_path: Path) -> None:
    linux = os.urandom(5000)
    uki = _build_uki(tmp_path, linux, b"ro")
    state = tmp_path / "state"
    out = kernel_for_kexec(uki, state, KVER)
    assert out.read_bytes() == linux
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    plain = tmp_path / "linux.bin"
    assert kernel_for_kexec(plain, state, KVER) == plain  # not a UKI: as it is


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b"XX" + b[2:], "no MZ header"),
        (lambda b: b[:0x3C] + (10**6).to_bytes(4, "little") + b[0x40:], "no PE signature"),
        (lambda b: b[:700], "runs past the end"),
    ],
)
def test_truncated_or_bogus_pe(tmp_path: Path, damage, message) -> None:
    uki = _build_uki(tmp_path, b"k" * 3000, b"ro")
    bad = tmp_path / "bad.efi"
    bad.write_bytes(damage(uki.read_bytes()))
    with pytest.raises(KdumpyError, match=message):
        uki_section(bad, ".linux")
