"""Symbol tables: name -> address and address -> name+offset, vmlinux and modules.

vmlinux symbols come from the dump's kallsyms (:mod:`kdumpy.analysis.kallsyms`);
module symbols are added by :mod:`kdumpy.analysis.helpers.modules` from each
``struct module``'s own symbol table.  kallsyms carries no sizes, so a symbol is
taken to extend to the next one (the way the kernel's own ``%pS`` does).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

# nm types that mark code; used to prefer a function over data at the same address.
TEXT_TYPES = frozenset("tTwW")


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int
    type: str  # nm-style type character
    module: str | None = None  # None for vmlinux
    size: int = 0  # 0 when unknown

    def describe(self, address: int) -> str:
        """``name+0x1a`` (and `` [module]``) for an address inside this symbol."""
        text = self.name if address == self.address else f"{self.name}+{address - self.address:#x}"
        return f"{text} [{self.module}]" if self.module else text


def _preference(sym: Symbol) -> tuple[int, bool, bool, bool]:
    """Sort key: by address, then text before data, globals before locals, and the
    x86_64 syscall entry names over their ia32 aliases at the same address."""
    return (
        sym.address,
        sym.type not in TEXT_TYPES,
        sym.type.islower(),
        sym.name.startswith("__ia32_"),
    )


class SymbolTable:
    """All known symbols; lookups by name and by address."""

    def __init__(self) -> None:
        self._by_name: dict[str, Symbol] = {}
        self._sorted: list[Symbol] = []
        self._addrs: np.ndarray = np.zeros(0, dtype=np.uint64)
        self._pending: list[Symbol] = []

    def add_many(self, symbols: list[Symbol]) -> None:
        """Add symbols; a global name wins over a local one of the same name."""
        for sym in symbols:
            old = self._by_name.get(sym.name)
            if old is None or (old.type.islower() and sym.type.isupper()):
                self._by_name[sym.name] = sym
        self._pending.extend(symbols)

    def _index(self) -> None:
        if not self._pending:
            return
        # Only symbols with real kernel addresses take part in address lookups
        # (absolute per-CPU offsets are small numbers).
        merged = self._sorted + [s for s in self._pending if s.address >= 1 << 63]
        # At equal addresses, text before data and globals before locals, so that an
        # instruction pointer resolves to the function name tools print.
        merged.sort(key=_preference)
        dedup: list[Symbol] = []
        for sym in merged:
            if not dedup or dedup[-1].address != sym.address:
                dedup.append(sym)
        self._sorted = dedup
        self._addrs = np.fromiter((s.address for s in dedup), dtype=np.uint64, count=len(dedup))
        self._pending = []

    def lookup(self, name: str) -> Symbol | None:
        """The symbol called ``name`` (vmlinux or a module), or None."""
        return self._by_name.get(name)

    def address_of(self, name: str) -> int | None:
        sym = self._by_name.get(name)
        return None if sym is None else sym.address

    def find(self, address: int, max_distance: int = 1 << 20) -> Symbol | None:
        """The symbol an address falls in (the closest one at or below it), or None."""
        self._index()
        i = int(np.searchsorted(self._addrs, np.uint64(address), side="right")) - 1
        if i < 0:
            return None
        sym = self._sorted[i]
        if sym.size and address >= sym.address + sym.size:
            return None
        if address - sym.address > max_distance:
            return None
        return sym

    def next_after(self, address: int) -> int | None:
        """Address of the first symbol above ``address`` (where a function ends)."""
        self._index()
        i = int(np.searchsorted(self._addrs, np.uint64(address), side="right"))
        return int(self._addrs[i]) if i < len(self._addrs) else None

    def describe(self, address: int) -> str:
        """``func+0x12`` for an address, or the hex address if no symbol covers it."""
        sym = self.find(address)
        return sym.describe(address) if sym else f"{address:#x}"

    def names(self) -> list[str]:
        return list(self._by_name)

    def search(self, prefix: str) -> list[Symbol]:
        """Symbols whose name starts with ``prefix`` (for completion)."""
        keys = sorted(self._by_name)
        i = bisect.bisect_left(keys, prefix)
        out = []
        while i < len(keys) and keys[i].startswith(prefix):
            out.append(self._by_name[keys[i]])
            i += 1
        return out

    def __len__(self) -> int:
        return len(self._by_name)
