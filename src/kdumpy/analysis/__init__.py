"""Crash-dump analysis from the dump alone: kallsyms symbols, BTF types, ORC stacks.

:class:`~kdumpy.analysis.program.Program` is the debugger core; helpers per kernel
subsystem live in :mod:`kdumpy.analysis.helpers`; crash-like commands in
:mod:`kdumpy.analysis.commands`; the automatic report in :mod:`kdumpy.analysis.report`.
"""

from kdumpy.analysis.program import Program

__all__ = ["Program"]
