"""Symbol tables: name -> address and address -> name+offset, vmlinux and modules.

vmlinux symbols come from the dump's kallsyms (:mod:`kdumpy.analysis.kallsyms`);
module symbols are added by :mod:`kdumpy.analysis.helpers.modules` from each
``struct module``'s own symbol table.  kallsyms carries no sizes, so a symbol is
taken to extend to the next one (the way the kernel's own ``%pS`` does).

The table keeps parallel arrays (a kernel has ~150k symbols) and builds
:class:`Symbol` objects only for the answers.
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, count
from typing import TYPE_CHECKING

from kdumpy.tables import never_decreasing

if TYPE_CHECKING:
    from kdumpy.analysis.kallsyms import Kallsyms

# nm types that mark code; used to prefer a function over data at the same address.
TEXT_TYPES = frozenset("tTwW")
# Addresses below this are not kernel addresses (absolute per-CPU offsets are small).
_KERNEL = 1 << 63


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


class _Run:
    """Symbols ``start..end-1`` of the table at kernel addresses, in address order
    (``order``: their indices, ``addrs``: their addresses), for binary searches.  The
    vmlinux symbols come sorted (kallsyms is in address order): then checking that is
    all it costs."""

    def __init__(self, addresses: array.array, start: int, end: int) -> None:
        addrs = addresses[start:end]
        if never_decreasing(addrs):
            first = bisect.bisect_left(addrs, _KERNEL)
            self.order: Sequence[int] = range(start + first, end)
            self.addrs: Sequence[int] = addrs[first:]
        else:
            kernel = [i for i, a in enumerate(addrs) if a >= _KERNEL]
            kernel.sort(key=addrs.__getitem__)  # stable: aliases stay in table order
            self.order = [start + i for i in kernel]
            self.addrs = [addrs[i] for i in kernel]

    def at_or_below(self, address: int) -> list[int]:
        """Indices of the symbols at the highest address <= ``address`` (aliases)."""
        j = bisect.bisect_right(self.addrs, address) - 1
        if j < 0:
            return []
        first = bisect.bisect_left(self.addrs, self.addrs[j], 0, j)
        return [self.order[k] for k in range(first, j + 1)]

    def above(self, address: int) -> int | None:
        """The lowest address above ``address``."""
        j = bisect.bisect_right(self.addrs, address)
        return self.addrs[j] if j < len(self.addrs) else None


class SymbolTable:
    """All known symbols; lookups by name and by address."""

    def __init__(self) -> None:
        # vmlinux symbols stay in their Kallsyms (names and types decoded on demand) as
        # entries 0..base-1; later ones (modules) are kept here, names in ``_names``.
        self._kallsyms: Kallsyms | None = None
        self._base = 0
        self._names: list[str] = []
        self._types: list[str] = []  # of entries base.. (all of them without kallsyms)
        self._modules: list[str | None] = []
        self._sizes: list[int] = []
        self._addresses = array.array("Q")
        self._by_name: dict[str, int] | None = None
        self._module_names: dict[str, int] | None = None
        # Address order: the first object file's symbols (vmlinux), then the rest.
        self._first_end: int | None = None
        self._runs: list[_Run] | None = None

    def add_kallsyms(self, kallsyms: Kallsyms) -> None:
        """The vmlinux symbols (first, before any module's)."""
        if len(self._addresses):
            raise ValueError("vmlinux kallsyms go first")
        self._kallsyms = kallsyms
        self._base = len(kallsyms)
        self._modules = [None] * self._base
        self._sizes = [0] * self._base
        self._addresses = array.array("Q")
        self._addresses.extend(kallsyms.addresses)
        self._changed()

    def add_arrays(
        self,
        names: list[str],
        types: list[str],
        addresses: Sequence[int],
        module: str | None = None,
        sizes: list[int] | None = None,
    ) -> None:
        """Add many symbols of one object file (vmlinux or a module)."""
        self._names += names
        self._types += types
        self._modules += [module] * len(names)
        self._sizes += sizes if sizes is not None else [0] * len(names)
        self._addresses.extend(addresses)
        self._module_names = None
        self._changed()

    def _changed(self) -> None:
        self._by_name = None
        if self._first_end is None:
            self._first_end = len(self._addresses)
        self._runs = None

    def add_many(self, symbols: list[Symbol]) -> None:
        for module in {s.module for s in symbols}:
            group = [s for s in symbols if s.module == module]
            self.add_arrays(
                [s.name for s in group],
                [s.type for s in group],
                [s.address for s in group],
                module,
                [s.size for s in group],
            )

    def _name(self, i: int) -> str:
        if i < self._base:
            assert self._kallsyms is not None
            return self._kallsyms.name(i)
        return self._names[i - self._base]

    def _type(self, i: int) -> str:
        if i < self._base:
            assert self._kallsyms is not None
            return self._kallsyms.type_of(i)
        return self._types[i - self._base]

    def _symbol(self, i: int) -> Symbol:
        return Symbol(
            self._name(i), self._addresses[i], self._type(i), self._modules[i], self._sizes[i]
        )

    def _name_index(self) -> dict[str, int]:
        """Name -> index of every symbol (all names decoded); a global symbol wins
        over a local one of the same name, and a later one over an earlier."""
        if self._by_name is None:
            k = self._kallsyms
            names = (k.names if k else []) + self._names
            self._by_name = _index(names, (k.types if k else []) + self._types)
        return self._by_name

    def _find_index(self, name: str) -> int | None:
        """Like ``_name_index().get(name)``, without decoding every vmlinux name."""
        k = self._kallsyms
        if k is None or self._by_name is not None:
            return self._name_index().get(name)
        if self._module_names is None:
            self._module_names = {
                n: i + self._base for n, i in _index(self._names, self._types).items()
            }
        found = k.indices_of(name)
        if (in_module := self._module_names.get(name)) is not None:
            found.append(in_module)
        glob = [i for i in found if self._type(i).isupper()]
        return (glob or found)[-1] if found else None

    def _address_runs(self) -> list[_Run]:
        if self._runs is None:
            first, end = self._first_end or 0, len(self._addresses)
            self._runs = [_Run(self._addresses, 0, first)]
            if end > first:
                self._runs.append(_Run(self._addresses, first, end))
        return self._runs

    def _preference(self, i: int) -> tuple[bool, bool, bool]:
        """At one address: text before data, globals before locals, and x86_64 syscall
        names over their ia32 aliases, so a pc resolves to the name tools print."""
        t = self._type(i)
        return (t not in TEXT_TYPES, t.islower(), self._name(i).startswith("__ia32_"))

    def _at_or_below(self, address: int) -> int | None:
        """The symbol an address resolves to: at the highest address <= it, the
        preferred one of the names there."""
        best: list[int] = []
        for run in self._address_runs():
            found = run.at_or_below(address)
            if found and (not best or self._addresses[found[0]] > self._addresses[best[0]]):
                best = found
            elif found and self._addresses[found[0]] == self._addresses[best[0]]:
                best = sorted(best + found)
        return min(best, key=self._preference) if best else None

    def lookup(self, name: str) -> Symbol | None:
        """The symbol called ``name`` (vmlinux or a module), or None."""
        i = self._find_index(name)
        return None if i is None else self._symbol(i)

    def address_of(self, name: str) -> int | None:
        i = self._find_index(name)
        return None if i is None else self._addresses[i]

    def find(
        self, address: int, max_distance: int = 1 << 20, within_size: bool = True
    ) -> Symbol | None:
        """The symbol an address falls in (the closest one at or below it), or None;
        ``within_size=False`` takes the closest one even past its known size (crash's
        symbolic words: a return address just after a noreturn call)."""
        i = self._at_or_below(address)
        if i is None:
            return None
        sym = self._symbol(i)
        if within_size and sym.size and address >= sym.address + sym.size:
            return None
        if address - sym.address > max_distance:
            return None
        return sym

    def next_after(self, address: int) -> int | None:
        """Address of the first symbol above ``address`` (where a function ends)."""
        above = [a for run in self._address_runs() if (a := run.above(address)) is not None]
        return min(above) if above else None

    def describe(self, address: int) -> str:
        """``func+0x12`` for an address, or the hex address if no symbol covers it."""
        sym = self.find(address)
        return sym.describe(address) if sym else f"{address:#x}"

    def names(self) -> list[str]:
        return list(self._name_index())

    def in_address_order(self) -> list[Symbol]:
        """Every symbol at a kernel address, lowest first, aliases included (``sym -l``)."""
        addrs = self._addresses
        kernel = [i for i, a in enumerate(addrs) if a >= _KERNEL]
        kernel.sort(key=addrs.__getitem__)
        return [self._symbol(i) for i in kernel]

    def neighbours(self, address: int) -> tuple[Symbol | None, Symbol | None]:
        """The symbols just below and just above the one at or below ``address``, one
        name per address as :meth:`find` picks it (``sym -p`` / ``sym -n``)."""
        here = self._at_or_below(address)
        below = None
        if here is not None and self._addresses[here] > 0:
            found = self._at_or_below(self._addresses[here] - 1)
            below = self._symbol(found) if found is not None else None
        after = self.next_after(address)
        above_i = self._at_or_below(after) if after is not None else None
        return below, self._symbol(above_i) if above_i is not None else None

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
