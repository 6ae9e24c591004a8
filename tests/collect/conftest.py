"""Fixtures for the collector tests: kdumpy and makedumpfile runs on real lab dumps.

Outputs are cached per session (and makedumpfile's across sessions, under
``~/.cache/kdumpy/lab/derived-collect/``) because every run reads a 1 GiB vmcore.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from collect_oracle import run_kdumpy


def _derived(vmcore: Path) -> Path:
    root = Path(os.environ.get("KDUMPY_LAB_CACHE", Path.home() / ".cache/kdumpy/lab"))
    out = root / "derived-collect" / f"{vmcore.name}-{vmcore.stat().st_size}"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def makedumpfile_out() -> Callable[[Path, list[str]], Path]:
    """``makedumpfile ARGS VMCORE OUT`` once per (vmcore, args), cached."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")

    def run(vmcore: Path, args: list[str]) -> Path:
        name = "mdf" + "".join(a.replace("-", "_") for a in args)
        final = _derived(vmcore) / name
        if not final.exists():
            tmp = final.with_name(name + ".tmp")
            tmp.unlink(missing_ok=True)
            if "-F" in args:
                with open(tmp, "wb") as out:
                    proc = subprocess.run(["makedumpfile", *args, str(vmcore)], stdout=out,
                                          stderr=subprocess.PIPE, text=True)  # fmt: skip
            else:
                proc = subprocess.run(["makedumpfile", *args, str(vmcore), str(tmp)],
                                      capture_output=True, text=True)  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-500:]
            tmp.rename(final)
        return final

    return run


@pytest.fixture(scope="session")
def kdumpy_out(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, list[str]], Path]:
    """``kdumpy collect ARGS VMCORE OUT`` once per (vmcore, args) in this session."""
    cache: dict[tuple[str, tuple[str, ...]], Path] = {}
    base = tmp_path_factory.mktemp("kdumpy-out")

    def run(vmcore: Path, args: list[str]) -> Path:
        key = (str(vmcore), tuple(args))
        if key not in cache:
            out = base / f"{len(cache)}-{vmcore.stem}"
            if "-F" in args:
                with open(out, "wb") as f:
                    proc = run_kdumpy(*args, str(vmcore), stdout=f)
            else:
                proc = run_kdumpy(*args, str(vmcore), str(out))
            assert proc.returncode == 0, proc.stderr.decode()[-500:]
            cache[key] = out
        return cache[key]

    return run
