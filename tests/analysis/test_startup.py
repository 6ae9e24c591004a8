"""What ``kdumpy crash DUMP -c CMD`` loads (issue 14, speed): start to first output is
mostly imports, so batch use loads neither the interactive shell's libraries
(prompt_toolkit, the pager's pydoc) nor the disassembler, nor numpy (80-150 ms of
import: the dump's tables are walked by kdumpy.tables instead), and when numpy is
loaded (kmem, search, collect) its OpenBLAS starts one thread, not one per CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from startup_probe import run_probe

from kdumpy.analysis.commands import _MODULE_OF, ALIASES, COMMANDS, load_commands


def test_batch_sys_loads_no_shell_pager_or_disassembler(synthetic_vmcore: Path) -> None:
    seen = run_probe("crash", str(synthetic_vmcore), "-c", "sys")
    loaded = set(seen["modules"])
    assert "kdumpy.analysis.commands.system" in loaded  # the command did run
    for unwanted in ("pydoc", "prompt_toolkit", "capstone"):
        assert unwanted not in loaded, unwanted
    assert seen["blas"] == "1"


def test_module_map_names_where_each_command_is_declared() -> None:
    """The start-up map (``-c sys`` imports one command module) is the registry's."""
    load_commands()
    declared = {name: cmd.handler.__module__ for name, cmd in COMMANDS.items()}
    declared |= {alias: declared[name] for alias, name in ALIASES.items()}
    assert {n: f"kdumpy.analysis.commands.{m}" for n, m in _MODULE_OF.items()} == declared


def test_batch_sys_imports_only_the_module_of_sys(synthetic_vmcore: Path) -> None:
    loaded = set(run_probe("crash", str(synthetic_vmcore), "-c", "sys")["modules"])
    commands = {m for m in loaded if m.startswith("kdumpy.analysis.commands.")}
    assert "kdumpy.analysis.commands.system" in commands
    assert not {"kdumpy.analysis.commands.kmem", "kdumpy.analysis.commands.searchcmd",
                "kdumpy.analysis.commands.irqcmds"} & commands  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [("crash", "-c", "sys"), ("crash", "-c", "ps"), ("crash", "-c", "bt"), ("report",),
     ("dmesg",)],
)  # fmt: skip
def test_first_commands_load_no_numpy(synthetic_vmcore: Path, argv: tuple[str, ...]) -> None:
    command, *rest = argv
    loaded = set(run_probe(command, str(synthetic_vmcore), *rest)["modules"])
    assert "kdumpy.analysis.program" in loaded or command == "dmesg"
    assert "numpy" not in loaded
