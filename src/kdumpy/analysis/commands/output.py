"""The shapes command output shares, so each command states only its fields.

Strings from the dump go through :func:`~kdumpy.printable.shown` here (``quoted``);
:func:`kdumpy.analysis.commands.run_line` escapes whatever else reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable

from kdumpy.printable import shown


def fields(pairs: Iterable[tuple[str, object]], width: int = 0) -> str:
    """crash's ``NAME: value`` block (``sys``, ``set``): one line each, names right-aligned
    to ``width`` or, by default, to the longest name."""
    pairs = list(pairs)
    width = width or max((len(name) for name, _ in pairs), default=0)
    return "".join(f"{name:>{width}}: {value}\n" for name, value in pairs)


def quoted(text: str) -> str:
    """A string from the dump in double quotes, as crash shows a command name or the
    panic message, made safe for a terminal."""
    return f'"{shown(text)}"'
