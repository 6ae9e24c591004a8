"""What ``kdumpy crash DUMP -c CMD`` loads (issue 14, speed): start to first output is
mostly imports, so batch use loads neither the interactive shell's libraries
(prompt_toolkit, the pager's pydoc) nor the disassembler, and numpy's OpenBLAS starts
one thread, not one per CPU."""

from __future__ import annotations

from pathlib import Path

from startup_probe import run_probe


def test_batch_sys_loads_no_shell_pager_or_disassembler(synthetic_vmcore: Path) -> None:
    seen = run_probe("crash", str(synthetic_vmcore), "-c", "sys")
    loaded = set(seen["modules"])
    assert "kdumpy.analysis.commands.system" in loaded  # the command did run
    for unwanted in ("pydoc", "prompt_toolkit", "capstone"):
        assert unwanted not in loaded, unwanted
    assert seen["blas"] == "1"
