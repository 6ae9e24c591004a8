"""VMCOREINFO: the ``KEY=VALUE`` text the crashed kernel leaves for dump tools.

The kernel prints each kind of entry with its own base (``kernel/vmcore_info.c``):
``SYMBOL(x)`` and ``KERNELOFFSET`` in hex without ``0x``; ``SIZE``, ``OFFSET``,
``LENGTH``, ``PAGESIZE`` and ``CRASHTIME`` in decimal; ``NUMBER(x)`` in signed decimal,
except ``NUMBER(VMALLOC_START)`` which carries a ``0x`` prefix.  Numbers are read like
makedumpfile does: decimal first, hex when the decimal parse leaves garbage.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdumpy.errors import DumpFormatError


def _parse_number(text: str) -> int | None:
    """Signed decimal, falling back to hex (``0x`` optional), None if neither."""
    text = text.strip()
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        return int(text, 16)
    except ValueError:
        return None


def _parse_hex(text: str) -> int | None:
    """Unsigned hex with or without ``0x``, None if it is not hex."""
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


class VmcoreInfo:
    """Parsed VMCOREINFO text.

    Lookups return None when an entry is absent, because page classification and
    the printk readers test for the presence of entries to pick a kernel era.  Use
    :meth:`require` where an entry is essential: it raises a one-line
    :class:`DumpFormatError` naming the dump.
    """

    def __init__(self, raw: str | bytes, source: str = "dump") -> None:
        if isinstance(raw, bytes | bytearray | memoryview):
            raw = bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace")
        self.raw: str = raw
        self.source = source
        self._entries: dict[str, str] = {}
        for line in raw.splitlines():
            key, sep, value = line.partition("=")
            if sep and key:
                # The kernel appends CRASHTIME after the rest; later duplicates win,
                # like makedumpfile's last-match-wins scan.
                self._entries[key.strip()] = value.strip()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, key: str) -> str | None:
        """The raw text value of ``key`` (e.g. ``"SYMBOL(_stext)"``), or None."""
        return self._entries.get(key)

    def symbol(self, name: str) -> int | None:
        """Address of ``SYMBOL(name)`` (hex; already KASLR-shifted at runtime)."""
        value = self._entries.get(f"SYMBOL({name})")
        return None if value is None else _parse_hex(value)

    def number(self, name: str) -> int | None:
        """``NUMBER(name)``: signed decimal (hex accepted, e.g. VMALLOC_START)."""
        value = self._entries.get(f"NUMBER({name})")
        return None if value is None else _parse_number(value)

    def size(self, name: str) -> int | None:
        """``SIZE(name)`` in bytes."""
        value = self._entries.get(f"SIZE({name})")
        return None if value is None else _parse_number(value)

    def offset(self, name: str) -> int | None:
        """``OFFSET(struct.member)`` in bytes, e.g. ``offset("page.flags")``."""
        value = self._entries.get(f"OFFSET({name})")
        return None if value is None else _parse_number(value)

    def length(self, name: str) -> int | None:
        """``LENGTH(name)``: an array length."""
        value = self._entries.get(f"LENGTH({name})")
        return None if value is None else _parse_number(value)

    def require(self, key: str) -> int:
        """The numeric value of a full key such as ``"SYMBOL(prb)"``, or a one-line error."""
        kind, _, rest = key.partition("(")
        name = rest.rstrip(")")
        lookup = {
            "SYMBOL": self.symbol,
            "NUMBER": self.number,
            "SIZE": self.size,
            "OFFSET": self.offset,
            "LENGTH": self.length,
        }.get(kind)
        if lookup is not None and name:
            value = lookup(name)
        else:
            text = self._entries.get(key)
            value = None if text is None else _parse_number(text)
        if value is None:
            raise DumpFormatError(f"{self.source}: VMCOREINFO has no usable {key}")
        return value

    @property
    def osrelease(self) -> str | None:
        """``OSRELEASE`` (uname -r of the crashed kernel)."""
        return self._entries.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self._entries.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        value = self._entries.get("PAGESIZE")
        return None if value is None else _parse_number(value)

    @property
    def kernel_offset(self) -> int | None:
        """``KERNELOFFSET``: the KASLR text slide (hex)."""
        value = self._entries.get("KERNELOFFSET")
        return None if value is None else _parse_hex(value)

    @property
    def crash_time(self) -> int | None:
        """``CRASHTIME``: seconds since the epoch at the panic."""
        value = self._entries.get("CRASHTIME")
        return None if value is None else _parse_number(value)

    def __repr__(self) -> str:
        return f"VmcoreInfo({self.osrelease!r}, {len(self._entries)} entries)"
