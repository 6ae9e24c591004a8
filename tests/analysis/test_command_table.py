"""docs/commands.md is the command table ``command_table.py`` prints from kdumpy's
registry and drgn's crash mode (so a command added or an option missing shows there),
and every oracle test it names exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytest.importorskip("drgn")
import command_table  # noqa: E402  (beside this file; needs drgn)

HERE = Path(__file__).parent
DOC = HERE.parents[1] / "docs" / "commands.md"


def test_docs_commands_md_is_the_generated_table() -> None:
    assert DOC.read_text() == command_table.render(), (
        "docs/commands.md is stale: python3 tests/analysis/command_table.py > docs/commands.md"
    )


def test_every_oracle_test_named_exists_and_is_a_vm_test() -> None:
    for command, tests in command_table.ORACLES.items():
        for ref in tests:
            file, _, name = ref.partition("::")
            source = (HERE / file).read_text()
            functions = {n.name for n in ast.walk(ast.parse(source))
                         if isinstance(n, ast.FunctionDef)}  # fmt: skip
            assert name in functions, f"{command}: {ref} does not exist"
            assert "pytest.mark.vm" in source, f"{command}: {file} is not a VM oracle file"


def test_every_command_kdumpy_shares_with_crash_or_drgn_has_an_oracle() -> None:
    ours = command_table.kdumpy_commands()
    peers = set(command_table.CRASH_802) | set(command_table.drgn_commands())
    for name in sorted(set(ours) & peers):
        proven = name in command_table.ORACLES or name in command_table.SHELL
        assert proven or name in command_table.ALIASES, f"{name}: no oracle test named"
