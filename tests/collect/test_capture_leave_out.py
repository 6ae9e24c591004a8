"""The capture path never imports what the capture initramfs leaves out.

pyruntime.capture_leave_out() names the modules the built page packer replaces (numpy and
the numpy classifier, the numpy fallback, the kdump-compressed reader, the compression
bindings).  Here they are made unimportable by a meta-path finder (installed through a
``sitecustomize`` on PYTHONPATH, so the collector the capture starts as a child process
has it too) and the capture runs as the capture kernel's /init runs it, on a vmcore built
by the test (fakecore).  Oracles: makedumpfile's file from the same vmcore, byte for byte
(lzo, zlib: the kinds the host's makedumpfile writes), and the machine's memory as the
test built it, read back from the saved dump.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakecore import PAGE, FakeMachine

from kdumpy.service import pyruntime
from kdumpy.vmcore import open_dump

PACKER = pyruntime.native_packer()
LEFT_OUT = pyruntime.capture_leave_out(PACKER)
pytestmark = pytest.mark.skipif(not LEFT_OUT, reason="kdumpy.collect._pagepack is not built")

SITECUSTOMIZE = """
import importlib.abc, os, sys

BLOCKED = tuple(os.environ["KDUMPY_TEST_BLOCK"].split(","))


class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            with open(os.environ["KDUMPY_TEST_BLOCK_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"{name}: not in the capture initramfs", name=name)
        return None


sys.meta_path.insert(0, LeftOut())
"""
PUT = (*range(1550, 1700, 3), *range(1790, 1797), 1950, 2001)  # pfns with data


def _content(pfn: int) -> bytes:
    return bytes([pfn & 0xFF or 1]) * 100 + pfn.to_bytes(4, "little")


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    machine = FakeMachine(pages=2048, holes=((1800, 1900),))
    for pfn in PUT:
        machine.put(pfn * PAGE, _content(pfn))
    return machine.write(tmp_path_factory.mktemp("fake") / "vmcore")


def _blocked_env(tmp_path: Path, blocked: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "blocked.log"
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "KDUMPY_TEST_BLOCK": ",".join(blocked),
           "KDUMPY_TEST_BLOCK_LOG": str(log)}  # fmt: skip
    return env, log


def _attempts(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _check_pages(dump_path: Path) -> None:
    """Every page the test wrote reads back from the saved dump (independent of the
    collector: the bytes are the test's own)."""
    with open_dump(dump_path) as dump:
        for pfn in PUT:
            assert dump.read_phys(pfn * PAGE, len(_content(pfn))) == _content(pfn), pfn


def test_capture_saves_with_the_left_out_modules_unimportable(vmcore: Path, tmp_path: Path):
    """The capture entry (python3 -m kdumpy.capture) with kdump.conf's default collector
    (kdumpy collect -l -d 31: the C classifier and packer) saves the dump."""
    assert {"numpy", "kdumpy.vmcore.diskdump", "lzo"} <= set(LEFT_OUT), LEFT_OUT
    env, log = _blocked_env(tmp_path, LEFT_OUT)
    conf = tmp_path / "kdump.conf"
    conf.write_text("ext4 LABEL=x\npath /var/crash\nfinal_action poweroff\n")
    target = tmp_path / "target"
    target.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy.capture", "--config", str(conf), "--vmcore", str(vmcore),
         "--no-action", "--target-dir", str(target)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kdump: saved vmcore to" in proc.stderr, proc.stderr[-3000:]
    assert _attempts(log) == []
    (saved,) = list((target / "var" / "crash").glob("*/vmcore"))
    _check_pages(saved)


@pytest.mark.parametrize("flag", ["-l", "-c", "-p", "-z"])
def test_collect_with_the_left_out_modules_unimportable(vmcore: Path, tmp_path: Path, flag: str):
    """Each compression the extension packs, written without its binding: byte for byte
    makedumpfile's file where the host's makedumpfile writes that kind."""
    kind = {"-l": "lzo", "-c": "zlib", "-p": "snappy", "-z": "zstd"}[flag]
    assert PACKER is not None
    if kind not in PACKER.kinds:
        pytest.skip(f"the extension was built without {kind}")
    env, log = _blocked_env(tmp_path, LEFT_OUT)
    ours = tmp_path / "ours"
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", flag, "--message-level",
                           "0", "-d", "1", str(vmcore), str(ours)],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _attempts(log) == []
    _check_pages(ours)
    if kind in ("lzo", "zlib") and shutil.which("makedumpfile"):
        theirs = tmp_path / "theirs"
        subprocess.run(["makedumpfile", flag, "--message-level", "0", "-d", "1", str(vmcore),
                        str(theirs)], check=True, capture_output=True)  # fmt: skip
        assert ours.read_bytes() == theirs.read_bytes()


def test_the_blocker_would_catch_an_import(vmcore: Path, tmp_path: Path):
    """Without the extension the collector turns to the numpy classifier, and the blocker
    stops it: the tests above could fail."""
    env, log = _blocked_env(tmp_path, (*LEFT_OUT, "kdumpy.collect._pagepack"))
    proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", "-l", "-d", "31",
                           str(vmcore), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode != 0
    assert "kdumpy.collect.classify_np" in _attempts(log), proc.stderr[-2000:]
