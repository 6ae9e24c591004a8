"""Which loader the service uses when the kernel has no kexec_file_load (ENOSYS).

Debian's arm64 kernels lack KEXEC_FILE and their kexec-tools writes a broken ELF core
header, so on aarch64 the service must use kdumpy's own kexec_load loader, never
``kexec -p``; elsewhere kexec-tools stays the fallback."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from kdumpy.arch import kexec as arch_kexec
from kdumpy.arch.arm64.kexec_load import LoadError, load_capture_kernel
from kdumpy.service import kexec


@pytest.fixture
def no_file_load(monkeypatch):
    def enosys(*_args):
        exc = kexec.KexecError("kexec_file_load failed: (ENOSYS)")
        exc.errno = errno.ENOSYS  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(kexec, "file_load", enosys)
    calls: list[tuple] = []
    monkeypatch.setattr(kexec, "tools_load", lambda *a: calls.append(("kexec -p", *a)))
    monkeypatch.setitem(arch_kexec._LEGACY_LOADERS, "aarch64",
                        lambda *a: calls.append(("kdumpy", *a)))  # fmt: skip
    return calls


def test_arm64_uses_kdumpys_loader_not_kexec_tools(monkeypatch, no_file_load):
    monkeypatch.setattr(kexec.platform, "machine", lambda: "aarch64")
    method = kexec.load(Path("/boot/vmlinuz"), Path("/initrd"), "irqpoll", ["-s"])
    assert method == "kexec_load"
    assert no_file_load == [("kdumpy", Path("/boot/vmlinuz"), Path("/initrd"), "irqpoll")]


def test_other_machines_fall_back_to_kexec_tools(monkeypatch, no_file_load):
    monkeypatch.setattr(kexec.platform, "machine", lambda: "x86_64")
    assert kexec.load(Path("/k"), None, "irqpoll", []) == "kexec -p"
    assert no_file_load[0][0] == "kexec -p"


def test_a_loader_failure_is_one_kexec_error(monkeypatch, no_file_load):
    def refuse(*_args):
        raise LoadError("/proc/iomem: no Crash kernel range")

    monkeypatch.setattr(kexec.platform, "machine", lambda: "aarch64")
    monkeypatch.setitem(arch_kexec._LEGACY_LOADERS, "aarch64", refuse)
    with pytest.raises(kexec.KexecError, match="^kexec_load: /proc/iomem: no Crash kernel"):
        kexec.load(Path("/k"), None, "", [])


def test_the_arm64_entry_is_the_real_loader():
    assert arch_kexec.legacy_loader("aarch64") is load_capture_kernel
    assert arch_kexec.legacy_loader("x86_64") is None
