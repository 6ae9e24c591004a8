"""Which kernel image to load as the capture kernel, found as kdumpctl finds it.

``prepare_kdump_kernel`` in kdump-lib.sh: in KDUMP_BOOTDIR (or /boot, /boot/efi, /efi, /)
the first of

* the ``BOOT_IMAGE=`` of /proc/cmdline (without GRUB's ``(hd0,gpt1)`` prefix) when it
  names this release,
* ``<KDUMP_IMG>-<release><KDUMP_IMG_EXT>`` (vmlinuz-6.12.0),
* ``<machine-id>/<release>/<KDUMP_IMG>`` and the Boot Loader Specification's
  ``<machine-id>/<release>/linux``,
* the unified kernel image ``EFI/Linux/<machine-id>-<release>.efi``, or the one the
  systemd stub names in the StubImageIdentifier EFI variable.

A unified kernel image is a PE file whose ``.linux`` section is the kernel: kdumpy copies
that section out (mode 0600, in its state directory) and loads the copy.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from kdumpy import fileio
from kdumpy.errors import KdumpyError

BOOT_DIRS = (Path("/boot"), Path("/boot/efi"), Path("/efi"), Path("/"))
STUB_IMAGE_ID = Path(
    "/sys/firmware/efi/efivars/StubImageIdentifier-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
)
MACHINE_ID = Path("/etc/machine-id")
MAX_SECTIONS = 96  # the PE/COFF limit


@dataclass(frozen=True)
class Section:
    name: str
    offset: int  # in the file
    size: int  # bytes of data in the file


def pe_sections(data: bytes, source: str = "image") -> dict[str, Section]:
    """The sections of a PE image (every offset checked against the file)."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise KdumpyError(f"{source}: not a PE image (no MZ header)")
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    if pe + 24 > len(data) or data[pe : pe + 4] != b"PE\0\0":
        raise KdumpyError(f"{source}: not a PE image (no PE signature)")
    nsections, _, _, _, optional_size = struct.unpack_from("<HIIIH", data, pe + 6)
    table = pe + 24 + optional_size
    if nsections > MAX_SECTIONS or table + 40 * nsections > len(data):
        raise KdumpyError(f"{source}: PE section table runs past the end of the file")
    sections = {}
    for i in range(nsections):
        raw_name, vsize, _, raw_size, raw_ptr = struct.unpack_from("<8sIIII", data, table + 40 * i)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        # The raw size is padded to the file alignment; the virtual size is the real one.
        size = min(vsize, raw_size) if vsize else raw_size
        if raw_ptr + size > len(data):
            raise KdumpyError(f"{source}: PE section {name} runs past the end of the file")
        sections[name] = Section(name, raw_ptr, size)
    return sections


def uki_section(path: Path, name: str) -> bytes:
    """One section (``.linux``, ``.initrd``, ``.cmdline``, ``.osrel``...) of a unified kernel
    image."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KdumpyError(f"{path}: cannot read: {exc.strerror}") from None
    section = pe_sections(data, str(path)).get(name)
    if section is None:
        raise KdumpyError(f"{path}: no {name} section: not a unified kernel image")
    return data[section.offset : section.offset + section.size]


def is_uki(path: Path) -> bool:
    """A PE image with a ``.linux`` section (a bzImage is also MZ/PE, with no such section)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
        return head == b"MZ" and ".linux" in pe_sections(path.read_bytes(), str(path))
    except (OSError, KdumpyError):
        return False


def boot_image(cmdline: str) -> str | None:
    """``BOOT_IMAGE=`` of a command line without GRUB's ``(hd0,gpt1)`` device prefix."""
    match = re.match(r"BOOT_IMAGE=(?:\([^)]*\))?(\S+)", cmdline)
    return match.group(1) if match else None


def stub_image(efivar: Path = STUB_IMAGE_ID) -> str | None:
    """The UKI the systemd stub booted (an EFI path, backslashes), as a relative path."""
    try:
        raw = efivar.read_bytes()[4:]  # attributes, then UTF-16LE text
    except OSError:
        return None
    text = raw.decode("utf-16-le", "ignore").replace("\\", "/")
    text = "".join(c for c in text if c.isprintable())
    return text.lstrip("/") or None


@dataclass(frozen=True)
class Lookup:
    """Where to look (each field overridable for tests)."""

    boot_dirs: tuple[Path, ...] = BOOT_DIRS
    img: str = "vmlinuz"  # KDUMP_IMG
    img_ext: str = ""  # KDUMP_IMG_EXT
    machine_id: str | None = None  # default: /etc/machine-id
    cmdline: str | None = None  # default: /proc/cmdline
    stub_image: str | None = None  # default: the StubImageIdentifier EFI variable


def candidates(release: str, lookup: Lookup) -> list[Path]:
    """Every path kdumpctl would try, in its order."""
    machine_id = lookup.machine_id if lookup.machine_id is not None else _machine_id()
    cmdline = lookup.cmdline if lookup.cmdline is not None else _proc_cmdline()
    uki = lookup.stub_image or stub_image() or f"EFI/Linux/{machine_id}-{release}.efi"
    names = [f"{lookup.img}-{release}{lookup.img_ext}"]
    if machine_id:
        names += [f"{machine_id}/{release}/{lookup.img}", f"{machine_id}/{release}/linux"]
    names.append(uki)
    booted = boot_image(cmdline)
    if booted and booted.endswith(release):
        names.insert(0, booted.lstrip("/"))
    return [d / n for d in lookup.boot_dirs for n in names]


def find_kernel(release: str, lookup: Lookup = Lookup()) -> Path:
    """The kernel image for ``release`` (a UKI is returned as it is: see kernel_for_kexec)."""
    for path in candidates(release, lookup):
        if path.is_file():
            return path
    modules = Path("/lib/modules") / release / "vmlinuz"  # Debian/Fedora keep a copy here
    if modules.is_file():
        return modules
    raise KdumpyError(f"no kernel image found for {release} in /boot")


def kernel_for_kexec(image: Path, state_dir: Path, release: str) -> Path:
    """A file kexec_file_load takes: the image itself, or a UKI's .linux section copied out
    (rewritten only when it changed, created 0600 in the state directory)."""
    if not is_uki(image):
        return image
    linux = uki_section(image, ".linux")
    out = state_dir / f"vmlinuz-{release}-uki"
    try:
        if out.read_bytes() == linux:
            return out
    except OSError:
        pass
    fileio.private_dir(state_dir)
    fileio.replace(out, linux)
    return out


def kdump_kernel_version(kernelver: str, running: str, modules: Path = Path("/lib/modules")) -> str:
    """kdumpctl's _get_kdump_kernel_version: KDUMP_KERNELVER, else the running release, but
    the non-debug twin of a ``+debug``/``-debug`` kernel when its modules are installed."""
    if kernelver:
        return kernelver
    if not re.search(r"[+-]debug$", running):
        return running
    plain = running[: -len("+debug")]
    return plain if (modules / plain / "modules.dep").is_file() else running


def kver_from_path(image: str, machine_id: str, modules: Path = Path("/lib/modules")) -> str | None:
    """kdump-utils' parse_kver_from_path: the release a boot entry's kernel path names
    (``vmlinuz-<kver>``, ``<machine-id>/<kver>/linux``, ``<machine-id>-<kver>.efi``), if its
    modules are installed."""
    guesses = [image.rpartition("/vmlinuz-")[2] if "/vmlinuz-" in image else ""]
    if f"/{machine_id}/" in image:
        guesses.append(image.split(f"/{machine_id}/", 1)[1].split("/", 1)[0])
    if f"/{machine_id}-" in image:
        guesses.append(image.split(f"/{machine_id}-", 1)[1].removesuffix(".efi"))
    for kver in guesses:
        if kver and (modules / kver / "modules.dep").is_file():
            return kver
    return None


def _machine_id() -> str:
    try:
        return MACHINE_ID.read_text().strip()
    except OSError:
        return ""


def _proc_cmdline() -> str:
    try:
        return Path("/proc/cmdline").read_text()
    except OSError:
        return ""
