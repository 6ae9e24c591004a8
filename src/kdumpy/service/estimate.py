"""``kdumpy estimate``: how much crashkernel memory the capture kernel needs.

kdump-utils' formula (``do_estimate`` in kdumpctl) as the baseline::

    estimated   = kernel + modules + 3 x initramfs + runtime margin
    recommended = max(default crashkernel for this RAM size, estimated)

``kernel`` is the in-memory size of the kernel image (:mod:`kdumpy.arch.images`: the
PT_LOAD segments of the vmlinux inside an x86 bzImage, or its ``init_size`` when the
compression is one Python cannot undo; an arm64 Image's ``image_size``); ``3 x initramfs``
because the packed archive, its unpacked copy in tmpfs and the tmpfs cap (50 % of RAM) all
weigh on the capture kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kdumpy.arch.images import loaded_size
from kdumpy.arch.kdump_select import kdump_machine
from kdumpy.errors import KdumpyError
from kdumpy.service.crashkernel import MiB, recommend_size, to_bytes

RUNTIME_MARGIN = 16 * MiB  # kdump-utils since 2025-08 (was 64 MiB)
LARGE_MODULE = 1 * MiB


@dataclass(frozen=True)
class Estimate:
    system_gib: int
    reserved: int
    baseline: int
    kernel: int
    kernel_method: str
    modules: int
    large_modules: tuple[tuple[str, int], ...]
    initramfs: int
    runtime: int = RUNTIME_MARGIN
    crypt: int = 0  # LUKS2 targets: the keyslot's memory plus cryptsetup's overhead
    # The target's storage stack (from the initramfs manifest): its layers and the bytes
    # its tools add to the unpacked initramfs (already in ``initramfs``; shown apart).
    stack: tuple[str, ...] = ()
    stack_bytes: int = 0
    stack_module_bytes: int = 0  # its kernel modules' (also in ``initramfs`` and ``modules``)
    # What the stack holds while the dump is written (md parity stripe caches).
    stack_memory: int = 0

    @property
    def estimated(self) -> int:
        return (self.kernel + self.modules + 3 * self.initramfs + self.runtime + self.crypt
                + self.stack_memory)  # fmt: skip

    @property
    def recommended(self) -> int:
        return max(self.baseline, self.estimated)


def kernel_size(vmlinuz: Path) -> tuple[int, str]:
    """In-memory size of the kernel image and how it was measured (:mod:`kdumpy.arch.images`)."""
    try:
        image = vmlinuz.read_bytes()
    except OSError as exc:
        raise KdumpyError(f"{vmlinuz}: cannot read: {exc.strerror}") from None
    return loaded_size(image, str(vmlinuz))


def proc_modules(text: str) -> dict[str, int]:
    """Module name -> size from /proc/modules."""
    sizes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            sizes[parts[0]] = int(parts[1])
    return sizes


def luks_size(luks_dumps: list[str], arch: str) -> int:
    """Extra capture memory for LUKS2 volumes under the target, from ``cryptsetup luksDump``
    of each: the largest keyslot's "Memory:" (KiB, the Argon2 cost) summed over volumes, plus
    cryptsetup's overhead once (kdumpctl do_estimate).  LUKS1 volumes cost nothing extra."""
    total = 0
    for dump in luks_dumps:
        if not re.search(r"^Version:\s*2\s*$", dump, re.MULTILINE):
            continue
        memory = [int(m) for m in re.findall(r"^\s+Memory:\s*(\d+)", dump, re.MULTILINE)]
        total += max(memory, default=0) * 1024
    if total:
        total += kdump_machine(arch).cryptsetup_overhead
    return total


def estimate(
    system_gib: int,
    default_crashkernel: str,
    reserved: int,
    vmlinuz: Path,
    initramfs: Path,
    modules: list[str],
    loaded_modules: dict[str, int],
    crypt: int = 0,
    stack: dict | None = None,
) -> Estimate:
    """Apply the formula; ``modules`` are those in the initramfs, sized as loaded now; the
    baseline is what ``default_crashkernel`` gives a machine of ``system_gib`` GiB."""
    kernel, method = kernel_size(vmlinuz)
    sizes = {m: loaded_modules.get(m, 0) for m in modules}
    large = tuple(
        sorted(((m, s) for m, s in sizes.items() if s >= LARGE_MODULE), key=lambda x: -x[1])
    )
    try:
        initrd_size = initramfs.stat().st_size
    except OSError:
        raise KdumpyError(f"{initramfs}: no capture initramfs; run kdumpy rebuild") from None
    return Estimate(
        system_gib=system_gib,
        reserved=reserved,
        baseline=to_bytes(recommend_size(system_gib, default_crashkernel)),
        crypt=crypt or int((stack or {}).get("luks_memory", 0)),
        stack=tuple(str(x) for x in (stack or {}).get("layers", [])),
        stack_bytes=int((stack or {}).get("tool_bytes", 0)),
        stack_module_bytes=int((stack or {}).get("module_bytes", 0)),
        stack_memory=int((stack or {}).get("stack_memory", 0)),
        kernel=kernel,
        kernel_method=method,
        modules=sum(sizes.values()),
        large_modules=large,
        initramfs=initrd_size,
    )


def render(est: Estimate) -> list[str]:
    """kdumpctl estimate's lines."""

    def m(n: int) -> str:
        return f"{-(-n // MiB)}M"

    lines = [
        f"Reserved crashkernel:    {m(est.reserved)}",
        f"Recommended crashkernel: {m(est.recommended)}",
        "",
        f"Kernel image size:   {m(est.kernel)} [{est.kernel_method}]",
        f"Kernel modules size: {m(est.modules)}",
        f"Initramfs size:      {m(est.initramfs)} (x3 = {m(3 * est.initramfs)})",
        f"Runtime reservation: {m(est.runtime)}",
    ]
    if est.crypt:
        lines.append(f"LUKS required size:  {m(est.crypt)}")
    if est.stack:
        sizes = f"tools {m(est.stack_bytes)}"
        if est.stack_module_bytes:
            sizes += f", kernel modules {m(est.stack_module_bytes)}"
        lines.append(f"Storage stack:       {', '.join(est.stack)} "
                     f"({sizes} of the unpacked initramfs)")  # fmt: skip
    if est.stack_memory:
        lines.append(f"Stack runtime:       {m(est.stack_memory)} (md stripe caches)")
    lines.append(f"Default for {est.system_gib}G RAM: {m(est.baseline)}")
    if est.large_modules:
        lines.append("Large modules:")
        lines += [f"    {name}: {size}" for name, size in est.large_modules]
    if est.reserved < est.recommended:
        recommended = m(est.recommended)
        warning = "WARNING: Current crashkernel size is lower than recommended size"
        lines.append(f"{warning} {recommended}.")
    return lines
