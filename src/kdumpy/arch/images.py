"""How much memory a kernel image takes once loaded, whatever the machine's image format.

``kdumpy estimate`` counts it in the capture kernel's reservation.  The image says what it
is: an ELF vmlinux (its PT_LOAD segments), an x86 bzImage (the PT_LOADs of the vmlinux
inside, or ``init_size`` when the compression is one Python cannot undo), an arm64 Image,
plain or wrapped (its header's ``image_size``: text, data and BSS).
"""

from __future__ import annotations

import struct

from kdumpy.arch.arm64 import image as arm64_image
from kdumpy.arch.x86_64 import image as x86_image
from kdumpy.errors import KdumpyError


def elf_load_size(elf: bytes) -> int:
    """Sum of the PT_LOAD segments' memory sizes of a 64-bit little-endian ELF."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or len(elf) < 0x40:
        raise KdumpyError("kernel payload is not a 64-bit ELF")
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    if phentsize < 48 or phoff + phnum * phentsize > len(elf):
        raise KdumpyError("kernel ELF program headers lie outside the file")
    total = 0
    for i in range(phnum):
        p_type = struct.unpack_from("<I", elf, phoff + i * phentsize)[0]
        if p_type == 1:
            total += struct.unpack_from("<Q", elf, phoff + i * phentsize + 40)[0]
    return total


def loaded_size(image: bytes, name: str = "kernel") -> tuple[int, str]:
    """Bytes of memory the kernel in *image* occupies, and how that was measured."""
    if image[:4] == b"\x7fELF":
        return elf_load_size(image), "ELF PT_LOAD"
    if x86_image.is_bzimage(image):
        payload, method = x86_image.bzimage_payload(image)
        elf = x86_image.decompress(payload, method)
        if elf is not None and elf[:4] == b"\x7fELF":
            return elf_load_size(elf), f"vmlinux PT_LOAD ({method})"
        return x86_image.init_size(image), f"bzImage init_size ({method} payload)"
    try:
        arm = arm64_image.load_image(image, name)
    except arm64_image.ImageError as exc:
        raise KdumpyError(
            f"{name}: neither an ELF vmlinux, an x86 bzImage nor an arm64 Image ({exc})"
        ) from None
    return arm.image_size, "arm64 Image image_size"
