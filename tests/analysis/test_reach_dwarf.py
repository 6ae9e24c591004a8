"""Types from DWARF through pahole, for kernels whose dump has no BTF.

A small program compiled with -g stands in for the vmlinux; the program itself prints
its structure's offsets (the compiler's own answer, the oracle)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kdumpy.analysis.btf import Btf
from kdumpy.analysis.dwarf import btf_from_dwarf
from kdumpy.analysis.types import StructType
from kdumpy.errors import KdumpyError

SOURCE = r"""
#include <stdio.h>
#include <stddef.h>
struct task_like { int pid; char comm[16]; struct task_like *parent; unsigned long flags; };
struct task_like init_task;
int main(void) {
    printf("%zu %zu %zu %zu %zu\n", offsetof(struct task_like, pid),
           offsetof(struct task_like, comm), offsetof(struct task_like, parent),
           offsetof(struct task_like, flags), sizeof(struct task_like));
    return 0;
}
"""

pytestmark = pytest.mark.skipif(
    shutil.which("pahole") is None or shutil.which("gcc") is None, reason="needs pahole and gcc"
)


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    d = tmp_path_factory.mktemp("dwarf")
    (d / "t.c").write_text(SOURCE)
    subprocess.run(["gcc", "-g", "-o", str(d / "t"), str(d / "t.c")], check=True)
    return d / "t"


def test_struct_layout_from_dwarf_is_the_compilers(program, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    offsets = [
        int(x)
        for x in subprocess.run([str(program)], capture_output=True, text=True).stdout.split()
    ]
    btf = Btf(btf_from_dwarf(str(program), "ab" * 20), "test")
    t = btf.type(btf.lookup("task_like", "struct"))
    assert isinstance(t, StructType)
    assert [m.bit_offset // 8 for m in t.members] == offsets[:4]
    assert t.size == offsets[4]
    cached = tmp_path / "kdumpy" / "btf" / f"{'ab' * 20}.btf"
    assert cached.stat().st_mode & 0o777 == 0o600
    # The second time, the cache answers (pahole is not run).
    monkeypatch.setenv("PATH", "/nonexistent")
    assert btf_from_dwarf(str(program), "ab" * 20) == cached.read_bytes()


def test_without_pahole_the_error_says_what_to_install(program, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(
        KdumpyError, match=r"t: the dump has no BTF.*needs pahole \(install dwarves\)"
    ):
        btf_from_dwarf(str(program), "cd" * 20)
