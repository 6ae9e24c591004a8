"""Values shown as symbols the way crash shows stack and memory words (``bt -F``,
``rd -s``): ``name+offset`` with a decimal offset, when the value lies among the
kernel image's or a module's symbols."""

from __future__ import annotations

from kdumpy.analysis.program import Program
from kdumpy.printable import shown


def symbolize(prog: Program, value: int) -> str:
    """``name`` or ``name+offset`` (decimal) for a value pointing into the kernel image
    (``_text`` to ``_end``) or module space at a known symbol, else 16 hex digits.

    >>> symbolize(prog, prog.symbol_address("panic") + 317)
    'panic+317'
    """
    if _in_symbol_range(prog, value):
        if value >= prog.dump.translator.modules_start:
            prog.load_modules()
        sym = prog.symbols.find(value, within_size=False)
        if sym is not None:
            offset = value - sym.address
            return shown(sym.name) + (f"+{offset}" if offset else "")
    return f"{value:016x}"


def _in_symbol_range(prog: Program, value: int) -> bool:
    if value >= prog.dump.translator.modules_start:
        return True
    start, end = prog.symbols.address_of("_text"), prog.symbols.address_of("_end")
    return start is not None and end is not None and start <= value < end
