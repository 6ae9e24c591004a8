"""Fixtures over the synthetic machine (tests/analysis/synthetic): analysis tests that
need no VM.  The machine is built once per session (about 0.1 s)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from synthetic import Machine, build_machine, open_program

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

# Nothing but newline and tab may reach a terminal from a command (C0, DEL, C1).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture(scope="session")
def synthetic() -> tuple[bytes, Machine]:
    return build_machine()


@pytest.fixture(scope="session")
def machine(synthetic: tuple[bytes, Machine]) -> Machine:
    return synthetic[1]


@pytest.fixture(scope="session")
def prog(synthetic: tuple[bytes, Machine]) -> Program:
    return open_program(synthetic[0])


@pytest.fixture(scope="session")
def synthetic_vmcore(synthetic: tuple[bytes, Machine], tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "vmcore"
    path.write_bytes(synthetic[0])
    return path


@pytest.fixture
def crash(prog: Program) -> Callable[[str], str]:
    """Run crash command lines in one fresh session; every answer is checked to be free
    of control characters, whatever the command."""
    session = Session(prog)

    def run(line: str) -> str:
        out = run_line(session, line)
        assert not _CONTROL.search(out), f"{line}: control character in {out!r}"
        return out

    return run


@pytest.fixture(scope="module")
def session(lab_dump) -> Iterator[Session]:
    """A crash session on the module's real lab dump (the oracle tests' kdumpy side)."""
    with Program.open(lab_dump.vmcore) as prog:
        yield Session(prog)
