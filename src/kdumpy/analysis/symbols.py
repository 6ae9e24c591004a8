"""Symbol tables: name -> address and address -> name+offset, vmlinux and modules.

vmlinux symbols come from the dump's kallsyms (:mod:`kdumpy.analysis.kallsyms`);
module symbols are added by :mod:`kdumpy.analysis.helpers.modules` from each
``struct module``'s own symbol table.  kallsyms carries no sizes, so a symbol is
taken to extend to the next one (the way the kernel's own ``%pS`` does).

The table keeps parallel arrays (a kernel has ~150k symbols) and builds
:class:`Symbol` objects only for the answers.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from itertools import compress, count
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kdumpy.analysis.kallsyms import Kallsyms

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


class SymbolTable:
    """All known symbols; lookups by name and by address."""

    def __init__(self) -> None:
        # vmlinux symbols stay in their Kallsyms (names decoded on demand) as entries
        # 0..base-1; later ones (modules) are kept here, names in ``_names``.
        self._kallsyms: Kallsyms | None = None
        self._base = 0
        self._names: list[str] = []
        self._types: list[str] = []
        self._modules: list[str | None] = []
        self._sizes: list[int] = []
        self._addresses = np.zeros(0, dtype=np.uint64)
        self._by_name: dict[str, int] | None = None
        self._module_names: dict[str, int] | None = None
        self._order: np.ndarray | None = None  # indices sorted for address lookups
        self._sorted_addrs = np.zeros(0, dtype=np.uint64)

    def add_kallsyms(self, kallsyms: Kallsyms) -> None:
        """The vmlinux symbols (first, before any module's)."""
        if len(self._types):
            raise ValueError("vmlinux kallsyms go first")
        self._kallsyms = kallsyms
        self._base = len(kallsyms)
        self._types = list(kallsyms.types)
        self._modules = [None] * self._base
        self._sizes = [0] * self._base
        self._addresses = kallsyms.addresses.astype(np.uint64)
        self._by_name = None
        self._order = None

    def add_arrays(
        self,
        names: list[str],
        types: list[str],
        addresses: np.ndarray,
        module: str | None = None,
        sizes: list[int] | None = None,
    ) -> None:
        """Add many symbols of one object file (vmlinux or a module)."""
        self._names += names
        self._types += types
        self._modules += [module] * len(names)
        self._sizes += sizes if sizes is not None else [0] * len(names)
        self._addresses = np.concatenate([self._addresses, addresses.astype(np.uint64)])
        self._by_name = None
        self._module_names = None
        self._order = None

    def add_many(self, symbols: list[Symbol]) -> None:
        for module in {s.module for s in symbols}:
            group = [s for s in symbols if s.module == module]
            self.add_arrays(
                [s.name for s in group],
                [s.type for s in group],
                np.array([s.address for s in group], dtype=np.uint64),
                module,
                [s.size for s in group],
            )

    def _name(self, i: int) -> str:
        if i < self._base:
            assert self._kallsyms is not None
            return self._kallsyms.name(i)
        return self._names[i - self._base]

    def _symbol(self, i: int) -> Symbol:
        return Symbol(
            self._name(i),
            int(self._addresses[i]),
            self._types[i],
            self._modules[i],
            self._sizes[i],
        )

    def _name_index(self) -> dict[str, int]:
        """Name -> index of every symbol (all names decoded); a global symbol wins
        over a local one of the same name, and a later one over an earlier."""
        if self._by_name is None:
            names = (self._kallsyms.names if self._kallsyms else []) + self._names
            self._by_name = _index(names, self._types)
        return self._by_name

    def _find_index(self, name: str) -> int | None:
        """Like ``_name_index().get(name)``, without decoding every vmlinux name when
        kallsyms can be searched by name."""
        k = self._kallsyms
        if k is None or not k.searchable or self._by_name is not None:
            return self._name_index().get(name)
        if self._module_names is None:
            self._module_names = {
                n: i + self._base for n, i in _index(self._names, self._types[self._base :]).items()
            }
        found = k.indices_of(name)
        if (in_module := self._module_names.get(name)) is not None:
            found.append(in_module)
        glob = [i for i in found if self._types[i].isupper()]
        return (glob or found)[-1] if found else None

    def _address_order(self) -> None:
        if self._order is not None:
            return
        addrs = self._addresses
        # Only real kernel addresses take part (absolute per-CPU offsets are small).
        kernel = np.nonzero(addrs >= np.uint64(1 << 63))[0]
        order = kernel[np.argsort(addrs[kernel], kind="stable")]
        sorted_addrs = addrs[order]
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = sorted_addrs[1:] != sorted_addrs[:-1]
        # Aliases (several names at one address) are rare: settle each run in Python.
        dup_starts = np.nonzero(~keep[1:] & keep[:-1])[0]
        for start in dup_starts.tolist():
            end = start + 1
            while end < len(order) and sorted_addrs[end] == sorted_addrs[start]:
                end += 1
            best = min(range(start, end), key=lambda j: self._preference(int(order[j])))
            order[start] = order[best]
        self._order = order[keep]
        self._sorted_addrs = sorted_addrs[keep]

    def _preference(self, i: int) -> tuple[bool, bool, bool]:
        """At one address: text before data, globals before locals, and x86_64 syscall
        names over their ia32 aliases, so a pc resolves to the name tools print."""
        t = self._types[i]
        return (t not in TEXT_TYPES, t.islower(), self._name(i).startswith("__ia32_"))

    def lookup(self, name: str) -> Symbol | None:
        """The symbol called ``name`` (vmlinux or a module), or None."""
        i = self._find_index(name)
        return None if i is None else self._symbol(i)

    def address_of(self, name: str) -> int | None:
        i = self._find_index(name)
        return None if i is None else int(self._addresses[i])

    def find(
        self, address: int, max_distance: int = 1 << 20, within_size: bool = True
    ) -> Symbol | None:
        """The symbol an address falls in (the closest one at or below it), or None;
        ``within_size=False`` takes the closest one even past its known size (crash's
        symbolic words: a return address just after a noreturn call)."""
        self._address_order()
        assert self._order is not None
        j = int(np.searchsorted(self._sorted_addrs, np.uint64(address), side="right")) - 1
        if j < 0:
            return None
        sym = self._symbol(int(self._order[j]))
        if within_size and sym.size and address >= sym.address + sym.size:
            return None
        if address - sym.address > max_distance:
            return None
        return sym

    def next_after(self, address: int) -> int | None:
        """Address of the first symbol above ``address`` (where a function ends)."""
        self._address_order()
        j = int(np.searchsorted(self._sorted_addrs, np.uint64(address), side="right"))
        return int(self._sorted_addrs[j]) if j < len(self._sorted_addrs) else None

    def describe(self, address: int) -> str:
        """``func+0x12`` for an address, or the hex address if no symbol covers it."""
        sym = self.find(address)
        return sym.describe(address) if sym else f"{address:#x}"

    def names(self) -> list[str]:
        return list(self._name_index())

    def in_address_order(self) -> list[Symbol]:
        """Every symbol at a kernel address, lowest first, aliases included (``sym -l``)."""
        addrs = self._addresses
        kernel = np.nonzero(addrs >= np.uint64(1 << 63))[0]
        return [self._symbol(int(i)) for i in kernel[np.argsort(addrs[kernel], kind="stable")]]

    def neighbours(self, address: int) -> tuple[Symbol | None, Symbol | None]:
        """The symbols just below and just above the one at or below ``address``, one
        name per address as :meth:`find` picks it (``sym -p`` / ``sym -n``)."""
        self._address_order()
        assert self._order is not None
        j = int(np.searchsorted(self._sorted_addrs, np.uint64(address), side="right")) - 1
        below = self._symbol(int(self._order[j - 1])) if j >= 1 else None
        above = self._symbol(int(self._order[j + 1])) if j + 1 < len(self._order) else None
        return below, above

    def search(self, prefix: str) -> list[Symbol]:
        """Symbols whose name starts with ``prefix`` (for completion)."""
        keys = sorted(self._name_index())
        i = bisect.bisect_left(keys, prefix)
        out = []
        while i < len(keys) and keys[i].startswith(prefix):
            out.append(self._symbol(self._name_index()[keys[i]]))
            i += 1
        return out

    def __len__(self) -> int:
        return len(self._name_index())


def _index(names: list[str], types: list[str]) -> dict[str, int]:
    """Name -> index, a global (upper-case type) symbol over a local one, else the
    last; built by C-level loops (~150k vmlinux symbols)."""
    glob = list(map(str.isupper, types))
    local = [not g for g in glob]
    index = dict(zip(compress(names, local), compress(count(), local), strict=False))
    index.update(zip(compress(names, glob), compress(count(), glob), strict=False))
    return index
