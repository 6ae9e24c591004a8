"""Text from a dump, made safe for a terminal.

Everything in a dump comes from the crashed machine: task names (any user sets them with
``prctl(PR_SET_NAME)``), log lines, module and file names.  Written raw, an escape
sequence in them would drive the reader's terminal (retitle it, clear it, forge lines,
or worse on some emulators).  The rule, shared by ``kdumpy dmesg`` and the analysis
commands: a character that is not printable is written as a backslash escape,
``\\xNN`` (``\\uNNNN`` / ``\\UNNNNNNNN`` above U+00FF), except the few whitespace
characters a caller keeps on purpose (the newline between lines, say).

``kdumpy dmesg`` applies it to bytes the way makedumpfile does (printable ASCII and
``isspace()`` kept, bytes from 0x80 escaped with a sign-extended ``\\xffffffNN``), so its
output stays byte-identical to makedumpfile's.  The analysis commands apply it to text
decoded as UTF-8 (bytes that do not decode are shown as ``\\xNN`` as well), so printable
non-ASCII names survive while control characters, C1 controls included, do not.
"""

from __future__ import annotations

from functools import lru_cache

# What a line of output keeps: tabs align columns (dis), newlines end lines.
LINES = "\n\t"


def _spell(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_text(text: str, keep: str = "") -> str:
    """``text`` with every non-printable character (``str.isprintable``) not in ``keep``
    written as ``\\xNN``; printable text is returned as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _spell(ord(c)) for c in text)


def shown(value: bytes | str) -> str:
    """A single-line field from a dump (a task or module name, a path) as it may be
    printed: decoded as UTF-8 and escaped, newlines and tabs included."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return escape_text(value)


@lru_cache(maxsize=8)
def _byte_table(keep: bytes, high: bytes) -> tuple[bytes, ...]:
    table = []
    for b in range(256):
        if 0x20 <= b < 0x7F or b in keep:
            table.append(bytes([b]))
        elif b >= 0x80:
            table.append(high % b)
        else:
            table.append(_spell(b).encode())
    return tuple(table)


def escape_bytes(data: bytes, keep: bytes = b"", high: bytes = b"\\x%02x") -> bytes:
    """``data`` with every byte outside printable ASCII and ``keep`` escaped; bytes from
    0x80 are written with the ``high`` format (makedumpfile: ``b"\\\\xffffff%02x"``)."""
    table = _byte_table(keep, high)
    if data.isascii() and all(len(table[c]) == 1 for c in set(data)):
        return data
    return b"".join(table[c] for c in data)
