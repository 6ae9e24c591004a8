"""py: Python over the dump, in the shell (``py EXPR``, ``py STATEMENT``, or ``py`` and
a block ended by an empty line)."""

from __future__ import annotations

import argparse
import io
import textwrap

from kdumpy.analysis.api import script_namespace
from kdumpy.analysis.commands.base import CommandError, Session, command
from kdumpy.analysis.scripting import run_code


@command("py", "run Python: prog and the kdumpy API (kdumpy.analysis.api) are bound",
         usage="py CODE  (or 'py' then a block ended by an empty line)",
         raw=True)  # fmt: skip
def cmd_py(session: Session, opts: argparse.Namespace) -> str:
    """Names assigned by one ``py`` stay for the next ones in the session."""
    code = textwrap.dedent(opts.text).strip("\n")
    if not code.strip():
        raise CommandError("give Python code: py CODE, or py and a block in the shell")
    namespace = session.extra.get("py")
    if not isinstance(namespace, dict):
        namespace = session.extra["py"] = script_namespace(session.prog)
    out, err = io.StringIO(), io.StringIO()
    if not run_code(code, "<py>", namespace, out, err):
        session.failed = True
    return out.getvalue() + err.getvalue()
