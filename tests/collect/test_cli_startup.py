"""The command line imports only what the chosen command uses (issue 15: start-up).

``kdumpy.cli.COMMANDS`` names each command's module and help line; these tests hold
the registry to the modules' own parsers, and check in a fresh interpreter which
modules ``--version`` and ``collect`` load.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys

import pytest
from fakecore import PAGE, FakeMachine
from startup_probe import modules_loaded

import kdumpy
from kdumpy import cli


def help_lines(sub: argparse._SubParsersAction) -> list[tuple[str, str | None]]:
    return [(a.dest, a.help) for a in sub._choices_actions]


@pytest.mark.parametrize("module", sorted({m for m, _ in cli.COMMANDS.values()}))
def test_registry_matches_the_modules_parsers(module: str) -> None:
    """A module registers exactly its registry commands, in order, with the same help."""
    import importlib

    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(f"kdumpy.cli.{module}").register(sub)
    expected = [(name, text) for name, (m, text) in cli.COMMANDS.items() if m == module]
    assert help_lines(sub) == expected


def test_top_level_help_is_the_full_parsers() -> None:
    full = cli.build_parser(None).format_help()
    assert cli.build_parser([]).format_help() == full
    assert cli.build_parser(["-h", "collect"]).format_help() == full


HEAVY = ("numpy", "rich", "zstandard", "cramjam", "lzo", "capstone", "elftools", "prompt_toolkit",
         "concurrent.futures")  # fmt: skip


def test_version_loads_no_command_module() -> None:
    loaded = modules_loaded("--version")
    kdumpy_modules = {m for m in loaded if m.startswith("kdumpy")}
    assert kdumpy_modules == {"kdumpy", "kdumpy.cli", "kdumpy.errors"}
    assert not set(HEAVY) & loaded


@pytest.mark.parametrize("args", [["-l", "-d", "31"], ["-d", "1"], ["-c", "-d", "0"],
                                  ["-E", "-d", "1"]])  # fmt: skip
def test_collect_of_an_elf_dump_imports_no_numpy(tmp_path, args: list[str]) -> None:  # noqa: ANN001
    """A whole collection of an ELF vmcore (what the capture kernel reads) runs without
    numpy (~0.1 s to import, before the first page could be read): filtering, packing
    and writing run in C or on bytes.  The dump is a hand-built one with kept, excluded
    and zero pages, so every step of the collector runs."""
    machine = FakeMachine(pages=2048, holes=((1800, 1900),))
    for pfn in range(1550, 1700, 3):
        machine.put(pfn * PAGE, pfn.to_bytes(4, "little") * 100)
    vmcore = machine.write(tmp_path / "vmcore")
    out = tmp_path / "out"
    loaded = modules_loaded("collect", "--message-level", "0", *args, str(vmcore), str(out))
    assert out.stat().st_size > 0
    assert "kdumpy.collect.collector" in loaded
    # dataclasses (and the inspect it imports) cost more than the rest of the collector's
    # start-up: its records are NamedTuples and plain classes
    assert not {"numpy", "rich", "dataclasses", "inspect"} & loaded
    # bt's unwinders and exception frames (kdumpy.arch.stack_select) are analysis's
    assert not {m for m in loaded if m.endswith((".unwind", ".unwind_fp", ".orc", ".stack"))}
    assert not {m for m in loaded if m.endswith((".frames", ".stack_select"))}
    # the ELF (-E) and flattened (-F) writers load only when asked for
    writers = {"kdumpy.vmcore.elf_writer", "kdumpy.collect.elf_output", "kdumpy.vmcore.flat_writer"}
    assert writers & loaded == ({"kdumpy.vmcore.elf_writer", "kdumpy.collect.elf_output"}
                                if "-E" in args else set())  # fmt: skip


def test_flattened_collect_loads_its_writer(tmp_path) -> None:  # noqa: ANN001
    vmcore = FakeMachine(pages=2048).write(tmp_path / "vmcore")
    out = tmp_path / "out"
    loaded = modules_loaded("collect", "--message-level", "0", "-F", "-d", "31", str(vmcore),
                            str(out))  # fmt: skip
    assert out.read_bytes()[:12] == b"makedumpfile"
    assert "kdumpy.vmcore.flat_writer" in loaded


def test_collect_loads_only_the_collector(tmp_path) -> None:  # noqa: ANN001
    loaded = modules_loaded("collect", "--message-level", "0", str(tmp_path / "no-such-file"),
                            str(tmp_path / "out"))  # fmt: skip
    assert "kdumpy.collect.collector" in loaded
    for unwanted in ("kdumpy.analysis", "kdumpy.lab", "kdumpy.service", "kdumpy.capture",
                     "kdumpy.cli.crash", "kdumpy.cli.lab", "rich", "pydoc", "numpy"):  # fmt: skip
        assert unwanted not in loaded


def test_python_m_kdumpy_collect_exits_with_its_status_and_all_its_messages(tmp_path) -> None:  # noqa: ANN001
    """``python -m kdumpy collect`` skips the interpreter's teardown (os._exit): its exit
    status, its messages on a pipe and its file are all there, as with a normal exit."""
    machine = FakeMachine(pages=2048)
    vmcore, out = machine.write(tmp_path / "vmcore"), tmp_path / "out"
    cmd = [sys.executable, "-m", "kdumpy", "collect", "-l", "-d", "31"]
    done = subprocess.run([*cmd, str(vmcore), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith("kdumpy collect Completed.\n")
    assert out.read_bytes()[:8] == b"KDUMP   "
    failed = subprocess.run([*cmd, str(tmp_path / "missing"), str(out)], capture_output=True,
                            text=True)  # fmt: skip
    assert failed.returncode != 0
    assert failed.stderr.startswith("kdumpy: ") and "missing" in failed.stderr


def test_collect_in_process_leaves_the_cyclic_gc_as_it_was(tmp_path) -> None:  # noqa: ANN001
    """The collector runs with the cyclic GC off; a caller in the same process gets it back."""
    vmcore = FakeMachine(pages=2048).write(tmp_path / "vmcore")
    assert gc.isenabled()
    assert cli.main(["collect", "--message-level", "0", "-d", "31", str(vmcore),
                     str(tmp_path / "out")]) == 0  # fmt: skip
    assert gc.isenabled()
    gc.disable()
    try:
        assert cli.main(["collect", "--message-level", "0", "-d", "1", str(vmcore),
                         str(tmp_path / "out1")]) == 0  # fmt: skip
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("columns", [None, "57", "133", "0", "wide"])
def test_help_is_as_wide_as_argparse_makes_it(monkeypatch, columns: str | None) -> None:  # noqa: ANN001
    """kdumpy's formatter finds the width without shutil, as argparse's own does with it."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    ours = cli.build_parser(["collect", "-h"])
    theirs = cli.build_parser(["collect", "-h"])
    for parser in (theirs, *theirs._subparsers._group_actions[0].choices.values()):  # type: ignore[union-attr]
        parser.formatter_class = argparse.HelpFormatter
    assert cli.HelpFormatter("kdumpy")._width == argparse.HelpFormatter("kdumpy")._width
    assert ours.format_help() == theirs.format_help()
    collect_ours = ours._subparsers._group_actions[0].choices["collect"]  # type: ignore[union-attr]
    collect_theirs = theirs._subparsers._group_actions[0].choices["collect"]  # type: ignore[union-attr]
    assert collect_ours.format_help() == collect_theirs.format_help()


def test_collect_parses_its_command_line_without_shutil() -> None:
    """Without site (as in the capture initramfs, where nothing else loads it), parsing a
    collect command line loads no shutil (argparse's formatter would)."""
    src = os.path.dirname(os.path.dirname(kdumpy.__file__))
    code = ("import sys, kdumpy.cli as c; c.build_parser(sys.argv[1:]).parse_args(sys.argv[1:]);"
            " print('shutil' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-S", "-c", code, "collect", "-l", "-d", "31", "a", "b"],
                          env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.split() == ["False"]
