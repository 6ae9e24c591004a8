"""The shapes command output shares, so each command states only its fields.

Strings from the dump go through :func:`~kdumpy.printable.shown` here (``quoted``);
:func:`kdumpy.analysis.commands.run_line` escapes whatever else reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable

from kdumpy.analysis.commands.base import Arg
from kdumpy.analysis.objects import Object
from kdumpy.analysis.printing import format_value
from kdumpy.analysis.types import ArrayType, IntType
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


def member_lines(obj: Object, members: list[str], radix: int = 10) -> str:
    """``  name = value`` for each member (``-s`` of list/tree, ``task -R``); a char
    array shows as the C string it holds."""
    return "".join(f"  {m} = {member_value(obj.member_(m), radix)}\n" for m in members)


def member_value(obj: Object, radix: int = 10) -> str:
    t = obj.type_.strip()
    if isinstance(t, ArrayType) and isinstance(t.element.strip(), IntType) and t.element.size == 1:
        return quoted(obj.string_().decode("utf-8", "backslashreplace"))
    return format_value(obj, 1, radix)


# crash's -x/-d: integers in hex or decimal whatever the session's default (decimal).
RADIX_ARGS = (
    Arg("-x", dest="radix", action="store_const", const=16, default=10,
        help="integers in hexadecimal"),
    Arg("-d", dest="radix", action="store_const", const=10, help="integers in decimal"),
)  # fmt: skip


def column(text: object, width: int, how: str = "c") -> str:
    """crash's column fitting: ``c`` centred (an odd spare space goes right, or left
    with ``cr``), ``l`` / ``r`` justified; text wider than the column is kept whole."""
    text = str(text)
    spare = width - len(text)
    if spare <= 0:
        return text
    if how == "l":
        return text + " " * spare
    if how == "r":
        return " " * spare + text
    left = spare // 2 + (spare % 2 if how == "cr" else 0)
    return " " * left + text + " " * (spare - left)
