"""Symbol files given beside a dump, as crash takes them: a vmlinux or a System.map.

``kdumpy crash [VMLINUX | System.map] DUMP`` (either order) tells the files apart by
their content: an ELF core or a kdump-compressed/flattened file is the dump, an ELF
executable the vmlinux, text lines ``ADDRESS TYPE NAME`` a System.map.

A vmlinux gives symbols (``.symtab``, with sizes), its build id and its ``linux_banner``;
its DWARF is read only when the dump carries no BTF (:mod:`kdumpy.analysis.dwarf`).  A
System.map gives symbols.  Both hold link-time addresses: the dump's ``KERNELOFFSET``
(KASLR) moves those of the kernel image.  A file that does not belong to the dump (build
id, or the addresses VMCOREINFO gives) is refused in one line naming both versions.
"""

from __future__ import annotations

import array
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdumpy.arch.select import DEFAULT_ARCH
from kdumpy.errors import KdumpyError
from kdumpy.vmcore.vmcoreinfo import VmcoreInfo

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

# Section flags (ELF gABI): what nm's letters are chosen by.
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4

DUMP, VMLINUX, SYSTEM_MAP = "dump", "vmlinux", "System.map"
_DUMP_MAGICS = (b"KDUMP   ", b"DISKDUMP", b"makedumpfile")
_MAP_LINE = re.compile(rb"^[0-9a-fA-F]{8,16} [A-Za-z?] \S+$")
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
SHN_ABS = 0xFFF1
STT_SECTION, STT_FILE = 3, 4


def classify(path: str) -> str:
    """What a file given on the command line is: dump, vmlinux or System.map."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise KdumpyError(f"{path}: cannot read: {exc.strerror}") from None
    if head.startswith(_DUMP_MAGICS):
        return DUMP
    if head.startswith(b"\x7fELF") and len(head) >= 18:
        e_type = int.from_bytes(head[16:18], "little")
        return DUMP if e_type == 4 else VMLINUX  # ET_CORE; else ET_EXEC / ET_DYN
    first = head.split(b"\n", 1)[0]
    if _MAP_LINE.match(first):
        return SYSTEM_MAP
    raise KdumpyError(f"{path}: not a dump, a vmlinux or a System.map")


@dataclass
class SymbolFile:
    """Link-time symbols of a vmlinux or System.map, and what identifies its build."""

    path: str
    kind: str
    names: list[str]
    types: list[str]
    addresses: Sequence[int]  # link-time
    sizes: list[int]
    build_id: str | None = None
    release: str | None = None  # from linux_banner (vmlinux) or the file name (map)

    def address(self, name: str) -> int | None:
        """Link-time address of ``name`` (a global symbol over a local one).  For the
        few lookups made here; the program's symbol table indexes them all."""
        found, at = [], -1
        while True:
            try:
                at = self.names.index(name, at + 1)
            except ValueError:
                break
            found.append(at)
        if not found:
            return None
        best = next((i for i in found if not self.types[i].islower()), found[0])
        return int(self.addresses[best])

    def relocated(self, offset: int, image_start: int = DEFAULT_ARCH.image_start) -> array.array:
        """Addresses moved by the KASLR offset: kernel-image addresses (from the
        architecture's ``image_start`` up) move, per-CPU offsets and absolute values
        do not."""
        mask = (1 << 64) - 1
        return array.array(
            "Q", [(a + offset) & mask if a >= image_start else a for a in self.addresses]
        )


def load_symbol_file(path: str, kind: str) -> SymbolFile:
    return load_vmlinux(path) if kind == VMLINUX else load_system_map(path)


def load_system_map(path: str) -> SymbolFile:
    """``ADDRESS TYPE NAME`` lines (nm's output)."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise KdumpyError(f"{path}: cannot read: {exc.strerror}") from None
    names, types, addrs = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) < 3 or len(parts[1]) != 1:
            raise KdumpyError(f"{path}:{number}: not a System.map line")
        try:
            address = int(parts[0], 16)
        except ValueError:
            address = -1
        if not 0 <= address < 1 << 64:
            raise KdumpyError(f"{path}:{number}: bad address")
        addrs.append(address)
        types.append(parts[1].decode("latin-1"))
        names.append(parts[2].decode("latin-1"))
    if not names:
        raise KdumpyError(f"{path}: empty System.map")
    match = re.search(r"System\.map-(.+)$", Path(path).name)
    return SymbolFile(
        path,
        SYSTEM_MAP,
        names,
        types,
        array.array("Q", addrs),
        [0] * len(names),
        release=match.group(1) if match else None,
    )


def load_vmlinux(path: str) -> SymbolFile:
    """``.symtab`` with nm-style types, the GNU build id and the banner's release."""
    # pyelftools takes about as long to import as numpy: only a vmlinux given needs it,
    # so the dump alone (the common case) starts without it.
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            sections = list(elf.iter_sections())
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                raise KdumpyError(f"{path}: vmlinux has no symbol table (stripped?)")
            strtab = sections[symtab["sh_link"]].data()
            data = symtab.data()
            syms = list(_SYM.iter_unpack(data[: len(data) - len(data) % _SYM.size]))
            sf = _symbols(path, syms, strtab, sections)
            sf.build_id = _build_id(elf)
            sf.release = _banner_release(sf, sections)
            return sf
    except (ELFError, ValueError, IndexError) as exc:
        raise KdumpyError(f"{path}: not a readable vmlinux ({exc})") from None
    except OSError as exc:
        raise KdumpyError(f"{path}: cannot read: {exc.strerror}") from None


def _symbols(
    path: str, syms: list[tuple[int, ...]], strtab: bytes, sections: list[Any]
) -> SymbolFile:
    # Named symbols in a section, not sections or files: (name, info, shndx, value, size).
    kept = [
        (name, info, shndx, value, size)
        for name, info, _other, shndx, value, size in syms
        if name and shndx and info & 0xF not in (STT_SECTION, STT_FILE)
    ]
    # nm's letter from the section: text, bss, data, read-only data; absolute.
    letters = []
    for sec in sections:
        flags, stype = sec["sh_flags"], sec["sh_type"]
        if flags & SHF_EXECINSTR:
            letters.append("t")
        elif stype == "SHT_NOBITS":
            letters.append("b")
        elif flags & SHF_WRITE:
            letters.append("d")
        elif flags & SHF_ALLOC:
            letters.append("r")
        else:
            letters.append("n")
    letters.append("?")

    def nm_type(info: int, shndx: int) -> str:
        letter = "a" if shndx == SHN_ABS else letters[min(shndx, len(letters) - 1)]
        bind = info >> 4
        if bind == 2:  # weak
            return "W" if letter == "t" else "V"
        return letter.upper() if bind else letter

    names, types, addresses, sizes = [], [], array.array("Q"), []
    for name_off, info, shndx, value, size in kept:
        end = strtab.find(b"\0", name_off)
        name = strtab[name_off : end if end >= 0 else None].decode("latin-1")
        # ELF mapping symbols ($x code, $d data on arm64) mark where code and data start;
        # they are no functions: nm hides them and kallsyms leaves them out.
        if name.startswith("$"):
            continue
        names.append(name)
        types.append(nm_type(info, shndx))
        addresses.append(value)
        sizes.append(size)
    return SymbolFile(path, VMLINUX, names, types, addresses, sizes)


def _build_id(elf: ELFFile) -> str | None:
    sec: Any  # a NoteSection (pyelftools makes one of every SHT_NOTE section)
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_NOTE":
            continue
        for note in sec.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                return str(note["n_desc"])
    return None


def _banner_release(sf: SymbolFile, sections: list) -> str | None:
    """The release in the vmlinux's own ``linux_banner`` ("Linux version REL ...")."""
    address = sf.address("linux_banner")
    if address is None:
        return None
    for sec in sections:
        start = sec["sh_addr"]
        if sec["sh_type"] == "SHT_PROGBITS" and start <= address < start + sec["sh_size"]:
            sec.stream.seek(sec["sh_offset"] + address - start)
            banner = sec.stream.read(256).split(b"\0", 1)[0].decode("latin-1")
            words = banner.split()
            return words[2] if len(words) > 2 and banner.startswith("Linux version") else None
    return None


def kaslr_offset(info: VmcoreInfo) -> int:
    value = info.get("KERNELOFFSET")
    try:
        return int(value, 16) if value else 0
    except ValueError:
        raise KdumpyError(f"{info.source}: bad KERNELOFFSET '{value}'") from None


def check_match(sf: SymbolFile, info: VmcoreInfo, force: bool = False) -> None:
    """Refuse a symbol file of another build than the dump's (unless forced)."""
    why = None
    dump_id = info.get("BUILD-ID")
    if sf.build_id and dump_id and sf.build_id != dump_id:
        why = f"build id {sf.build_id} vs {dump_id}"
    else:
        offset = kaslr_offset(info)
        for name in ("_stext", "init_uts_ns", "swapper_pg_dir"):
            want, have = info.symbol(name), sf.address(name)
            if want is not None and have is not None and (have + offset) & ((1 << 64) - 1) != want:
                why = f"{name} at {have + offset:#x}, the dump's at {want:#x}"
                break
        if why is None and sf.address("_stext") is None:
            why = "no _stext in it"
    if why is None or force:
        return
    theirs = sf.release or "unknown version"
    raise KdumpyError(
        f"{sf.path} ({theirs}) does not match {info.source} ({info.osrelease}): {why}; "
        "--force to use it anyway"
    )
