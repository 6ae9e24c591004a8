"""Crash-dump analysis from the dump alone: kallsyms symbols, BTF types, ORC stacks.

:class:`~kdumpy.analysis.program.Program` is the debugger core; helpers per kernel
subsystem live in :mod:`kdumpy.analysis.helpers`; crash-like commands in
:mod:`kdumpy.analysis.commands`; the automatic report in :mod:`kdumpy.analysis.report`.
"""

from kdumpy.analysis.helpers.modules import load_module_debug_info
from kdumpy.analysis.program import Program

# Program.load_modules reads the modules through the helpers above the program.
Program.module_loader = load_module_debug_info

__all__ = ["Program"]
