"""Fixtures for the dump readers: makedumpfile outputs of lab dumps, drgn as an oracle.

Derived files (makedumpfile runs on a lab vmcore) are cached under
``~/.cache/kdumpy/lab/derived/<vmcore name>-<size>/`` so the suite runs each tool once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def derived_dir(vmcore: Path) -> Path:
    root = Path(os.environ.get("KDUMPY_LAB_CACHE", Path.home() / ".cache/kdumpy/lab"))
    out = root / "derived" / f"{vmcore.name}-{vmcore.stat().st_size}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def makedumpfile(vmcore: Path, name: str, args: list[str], outputs: int = 1) -> list[Path]:
    """Run makedumpfile once per (dump, name); outputs land under their final names only
    when makedumpfile succeeded.  Skips the test if makedumpfile cannot handle the dump."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    d = derived_dir(vmcore)
    finals = [d / (name if outputs == 1 else f"{name}.{i}") for i in range(outputs)]
    if all(p.exists() for p in finals):
        return finals
    tmps = [p.with_name(p.name + ".tmp") for p in finals]
    for t in tmps:
        t.unlink(missing_ok=True)
    flat = "-F" in args
    cmd = ["makedumpfile", *args, str(vmcore)]
    if flat:
        with open(tmps[0], "wb") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
    else:
        proc = subprocess.run(cmd + [str(t) for t in tmps], capture_output=True, text=True)
    if proc.returncode != 0:
        for t in tmps:
            t.unlink(missing_ok=True)
        pytest.skip(f"makedumpfile {' '.join(args)} failed on {vmcore.name}: {proc.stderr[-300:]}")
    for t, f in zip(tmps, finals, strict=True):
        t.rename(f)
    return finals


def makedumpfile_dmesg(vmcore: Path) -> Path | None:
    """``makedumpfile --dump-dmesg`` output, or None if 1.7.2 cannot read this kernel."""
    d = derived_dir(vmcore)
    final = d / "dmesg.txt"
    if final.exists():
        return final
    tmp = d / "dmesg.txt.tmp"
    tmp.unlink(missing_ok=True)
    proc = subprocess.run(
        ["makedumpfile", "--dump-dmesg", str(vmcore), str(tmp)], capture_output=True, text=True
    )
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        return None
    tmp.rename(final)
    return final


def drgn_program(path: Path | list[Path], kallsyms: bool = False, kernel=None):  # noqa: ANN001, ANN201
    """drgn 0.3.0 (its own ELF and libkdumpfile readers, its own page-table walk).

    With *kallsyms*, drgn also knows the kernel's symbols: from the kernel's own kallsyms
    tables, which drgn finds through VMCOREINFO (Linux 6.0 and later), else from the lab
    *kernel*'s Debian -dbg vmlinux (its ELF symbol table, moved by KERNELOFFSET).
    """
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    if isinstance(path, list):
        pytest.skip("drgn opens one file")
    prog.set_core_dump(str(path))
    if kallsyms:
        from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

        try:
            finder = load_vmlinux_kallsyms(prog)
        except drgn.MissingDebugInfoError:  # no kallsyms in VMCOREINFO before 6.0
            assert kernel is not None, f"{path}: no kallsyms in VMCOREINFO, pass the kernel"
            prog.load_debug_info([str(kernel.dbg_vmlinux())])
        else:
            prog.register_symbol_finder("kallsyms", finder, enable_index=0)
    return prog


@pytest.fixture(scope="session")
def mdf():  # noqa: ANN201
    """``mdf(vmcore, name, args, outputs=1)``: cached makedumpfile outputs."""
    return makedumpfile


@pytest.fixture(scope="session")
def mdf_dmesg():  # noqa: ANN201
    """``mdf_dmesg(vmcore)``: cached makedumpfile --dump-dmesg text file, or None."""
    return makedumpfile_dmesg


@pytest.fixture(scope="session")
def drgn_prog():  # noqa: ANN201
    """``drgn_prog(path, kallsyms=False, kernel=None)``: drgn opened on a dump, as the oracle."""
    return drgn_program


# QEMU stopped at the reset vector: real dump-guest-memory output in about a second,
# without booting a kernel.  ELF, flattened kdump-zlib, and that kdump rearranged.
@pytest.fixture(scope="session")
def qemu_dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    d = tmp_path_factory.mktemp("qemu")
    files = {"elf": d / "q.elf", "zlib": d / "q.zlib"}
    script = f"dump-guest-memory {files['elf']}\ndump-guest-memory -z {files['zlib']}\n"
    proc = subprocess.Popen(
        [qemu, "-accel", "tcg", "-m", "64", "-S", "-nodefaults", "-display", "none",
         "-monitor", "stdio"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(script)
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
        p.exists() and p.stat().st_size > 0 for p in files.values()
    ):
        time.sleep(0.2)
    time.sleep(0.5)  # the monitor writes synchronously; let the last file close
    proc.communicate("quit\n", timeout=30)
    # The kdump file rearranged into a plain (seekable) kdump file, as makedumpfile -R does.
    from kdumpy.vmcore.flattened import FlattenedSource
    from kdumpy.vmcore.source import FileSource

    flat = FlattenedSource(FileSource(files["zlib"]))
    files["plain"] = d / "q.kdump"
    files["plain"].write_bytes(flat.read(0, flat.size))
    flat.close()
    return files
