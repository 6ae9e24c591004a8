"""Running Python over a dump: ``kdumpy crash --python SCRIPT`` and the shell's ``py``.

Code runs with ``prog`` and the whole API (:mod:`kdumpy.analysis.api`) bound.  What it
prints is dump text (task names, log lines, paths) as much as its own, so its output
goes through the same rule as every command's: :func:`kdumpy.printable.escape_text`
(control characters shown as ``\\xNN``; newline and tab kept).  A ``KdumpyError`` (a
fault reading memory, a missing symbol) ends the code with one line; any other error
is the script's own and shows its traceback, escaped too.
"""

from __future__ import annotations

import contextlib
import io
import traceback
from types import CodeType
from typing import TextIO

from kdumpy.analysis.api import script_namespace
from kdumpy.analysis.program import Program
from kdumpy.errors import KdumpyError
from kdumpy.printable import LINES, escape_text


class EscapedOutput(io.TextIOBase):
    """A text stream that escapes what is written before passing it on."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.out.write(escape_text(text, LINES))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def run_code(
    source: str, filename: str, namespace: dict[str, object], out: TextIO, err: TextIO
) -> bool:
    """Run ``source`` in ``namespace`` with its output (stdout and stderr) escaped onto
    ``out``/``err``; False when it failed (the reason is written to ``err``).  A single
    expression's value is printed, as at Python's prompt."""
    escaped_out, escaped_err = EscapedOutput(out), EscapedOutput(err)
    try:
        code = _compile(source, filename)
    except SyntaxError as exc:
        escaped_err.write(f"{filename}: {exc.msg} (line {exc.lineno})\n")
        return False
    with contextlib.redirect_stdout(escaped_out), contextlib.redirect_stderr(escaped_err):
        try:
            value = eval(code, namespace)  # noqa: S307 - the user's own script
            if value is not None:
                print(repr(value))
        except KdumpyError as exc:
            escaped_err.write(f"{filename}: {exc}\n")
            return False
        except BrokenPipeError:
            raise  # the reader went away (`| head`): the CLI ends quietly, as commands do
        except Exception as exc:
            # The script's frames only: the first one is this function's eval.
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            escaped_err.write("".join(traceback.format_exception(type(exc), exc, tb)))
            return False
    return True


def _compile(source: str, filename: str) -> CodeType:
    """An expression (whose value is shown) or else statements."""
    try:
        return compile(source, filename, "eval")
    except SyntaxError:
        return compile(source, filename, "exec")


def run_script(prog: Program, path: str, out: TextIO, err: TextIO) -> bool:
    """``kdumpy crash --python SCRIPT DUMP``: the script file run over ``prog``."""
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as exc:
        raise KdumpyError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KdumpyError(f"{path}: not a UTF-8 Python script") from None
    namespace = script_namespace(prog)
    namespace["__file__"] = path
    return run_code(source, path, namespace, out, err)
