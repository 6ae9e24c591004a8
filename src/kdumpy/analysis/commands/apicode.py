"""Pieces of the code ``CMD --python`` prints: the API imports, and the expressions
for a command's task and address arguments.

The code is meant to be read and edited: explicit imports from
:mod:`kdumpy.analysis.api` (the stable names), ``prog`` as the open dump (bound by
``kdumpy crash --python SCRIPT`` and ``py``; in a script of your own,
``prog = kdumpy.open("vmcore")``), and what the user typed quoted with :func:`repr`,
so any word makes valid Python.
"""

from __future__ import annotations

from collections.abc import Iterable

API = "kdumpy.analysis.api"


def api_code(names: Iterable[str], body: str, modules: Iterable[str] = ()) -> str:
    """``import`` lines for ``modules``, ``from kdumpy.analysis.api import names``, then
    the body."""
    lines = [f"import {m}" for m in sorted(set(modules))]
    wanted = sorted(set(names))
    if wanted:
        lines.append(f"from {API} import {', '.join(wanted)}")
    return "\n".join(lines) + ("\n\n" if lines else "") + body.strip("\n") + "\n"


def _is_hex(text: str) -> bool:
    digits = text[2:] if text.lower().startswith("0x") else text
    return bool(digits) and all(c in "0123456789abcdefABCDEF" for c in digits)


def address_expr(text: str) -> str:
    """A command's ``address|symbol[+offset]`` as Python: a number (crash reads bare hex)
    or ``prog.symbol_address("name") + offset``."""
    if text.startswith("0d") and text[2:].isdigit():
        return text[2:]
    if _is_hex(text):
        return f"{int(text, 16):#x}"
    name, plus, offset = text.partition("+")
    return f"prog.symbol_address({name!r})" + (f" + {int(offset, 0):#x}" if plus else "")


def task_expr(arg: str | None) -> tuple[str, set[str]]:
    """``(expression, API names it uses)`` for a command's ``pid | task`` argument: the
    panic task when none is given."""
    if arg is None:
        return "panic_task(prog)", {"panic_task"}
    if arg.isdigit() and len(arg) < 8:
        return f"find_task(prog, {int(arg)})", {"find_task"}
    address = address_expr(arg)
    return f'prog.pointer("struct task_struct", {address})', set()


ALL_TASKS = """tasks = [idle_task(prog, cpu) for cpu in prog.online_cpus]
tasks += sorted(for_each_task(prog), key=lambda t: int(t.pid))"""
ALL_TASKS_NAMES = {"idle_task", "for_each_task"}
