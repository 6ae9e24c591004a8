"""Early kdump with kdumpy's own kexec_load loader (arm64 kernels without kexec_file_load).

Which loader the early stage gets for a kernel config built here; what the hook is given to
copy (the interpreter, extension modules, byte code at the right paths); and the boot-time
script running the real loader through the staged byte code with the host's python3 -S
(no site, so kdumpy is importable only from the staged tree).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.errors import KdumpyError
from kdumpy.service import early_python
from kdumpy.service.early import (
    KDUMPY_LOADER,
    KEXEC_TOOLS,
    check_early_loader,
    loader_line,
    stage_python,
    write_loader_files,
)
from kdumpy.service.early_cmdline import render_early_conf
from kdumpy.service.early_state import EarlyState
from kdumpy.service.sysconfig import Sysconfig

NO_FILE_LOAD = "# CONFIG_KEXEC_FILE is not set"
NO_KALLSYMS_ALL = "# CONFIG_KALLSYMS_ALL is not set"
DEBIAN12_ARM64 = f"CONFIG_KEXEC=y\n{NO_FILE_LOAD}\n{NO_KALLSYMS_ALL}\n"
RELEASE = "6.1.0-50-cloud-arm64"
PYTHON = Path("/usr/bin/python3.11")


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"config-{RELEASE}"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("machine", "config", "loader"),
    [
        ("aarch64", DEBIAN12_ARM64, KDUMPY_LOADER),  # Debian 12: kexec-tools' header is broken
        ("aarch64", DEBIAN12_ARM64.replace(NO_KALLSYMS_ALL, "CONFIG_KALLSYMS_ALL=y"),
         KDUMPY_LOADER),  # Debian 13: no kexec_file_load either, as kdumpy start loads
        ("aarch64", DEBIAN12_ARM64.replace(NO_FILE_LOAD, "CONFIG_KEXEC_FILE=y"), KEXEC_TOOLS),
        ("x86_64", DEBIAN12_ARM64, KEXEC_TOOLS),  # kdumpy's own fallback is kexec-tools there
    ],
)  # fmt: skip
def test_loader_choice(tmp_path: Path, machine: str, config: str, loader: str) -> None:
    path = _config(tmp_path, config)
    assert check_early_loader(machine, RELEASE, path, "initramfs-tools", PYTHON) == loader


def test_without_a_config_the_choice_stays_kexec_tools(tmp_path: Path) -> None:
    assert check_early_loader("aarch64", RELEASE, tmp_path / "missing", python=PYTHON) == (
        KEXEC_TOOLS
    )


@pytest.mark.parametrize(
    ("generator", "python", "why"),
    [
        ("initramfs-tools", None, "there is no python3 to run it"),
        ("dracut", PYTHON, "not dracut's"),
    ],
)
def test_refused_where_neither_loader_works(
    tmp_path: Path, generator: str, python: Path | None, why: str
) -> None:
    path = _config(tmp_path, DEBIAN12_ARM64)
    with pytest.raises(KdumpyError) as err:
        check_early_loader("aarch64", RELEASE, path, generator, python)
    message = str(err.value)
    assert message.startswith(f"{path}: {RELEASE} has no kexec_file_load")
    assert why in message and "\n" not in message


def test_probe_results_are_sorted_and_foreign_modules_refused(tmp_path: Path) -> None:
    lib = tmp_path / "usr/lib/python3.11"
    src = tmp_path / "opt/kdumpy/src"
    result = {
        "kdumpy": f"{src}/kdumpy/__init__.py",
        "modules": {
            "sys": None,  # built in
            "os": f"{lib}/os.py",
            "_ctypes": f"{lib}/lib-dynload/_ctypes.cpython-311-aarch64-linux-gnu.so",
            "kdumpy": f"{src}/kdumpy/__init__.py",
            "kdumpy.arch.arm64.kexec_load": f"{src}/kdumpy/arch/arm64/kexec_load.py",
        },
    }
    got = early_python.classify(result, PYTHON, (lib,))
    assert got.stdlib == {"os": lib / "os.py"}
    assert set(got.kdumpy) == {"kdumpy", "kdumpy.arch.arm64.kexec_load"}
    assert got.extensions == [lib / "lib-dynload/_ctypes.cpython-311-aarch64-linux-gnu.so"]
    assert early_python.destination(
        got, "kdumpy.arch.arm64.kexec_load", src / "kdumpy/arch/arm64/kexec_load.py"
    ) == Path(  # noqa: E501
        "/kdumpy-early/python/kdumpy/arch/arm64/kexec_load.pyc"
    )
    assert early_python.destination(got, "os", lib / "os.py") == lib / "os.pyc"
    result["modules"]["zstandard"] = "/usr/lib/python3/dist-packages/zstandard/__init__.py"
    with pytest.raises(KdumpyError, match=r"^/usr/lib/python3/dist-packages/zstandard/__init__"):
        early_python.classify(result, PYTHON, (lib,))


def test_stage_writes_byte_code_where_python_looks_and_counts_the_bytes(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    (lib / "mod.py").write_text("VALUE = 42\n")
    kroot = tmp_path / "src"
    (kroot / "kdumpy").mkdir(parents=True)
    (kroot / "kdumpy/__init__.py").write_text("")
    ext = tmp_path / "fake_ext.so"
    ext.write_bytes(b"\x7fELF" + bytes(1000))
    exe = tmp_path / "python3"
    exe.write_bytes(bytes(5000))
    runtime = early_python.LoaderRuntime(
        exe, {"mod": lib / "mod.py"}, {"kdumpy": kroot / "kdumpy/__init__.py"}, kroot, [ext]
    )
    early = tmp_path / "early"
    early.mkdir()
    added = early_python.stage(runtime, early)
    tree = early / "python"
    pyc = tree / str(lib / "mod.pyc").lstrip("/")
    assert pyc.read_bytes()[:4] == importlib.util.MAGIC_NUMBER
    assert (tree / "kdumpy-early/python/kdumpy/__init__.pyc").is_file()
    assert (early / "python.list").read_text() == f"{exe}\n{ext}\n"
    on_disk = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert added == on_disk + 5000 + 1004
    # The staged byte code runs without its source (as in the initramfs).
    spec = importlib.util.spec_from_file_location("mod", pyc)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.VALUE == 42
    early_python.unstage(early)
    assert not tree.exists() and not (early / "python.list").exists()


def test_early_conf_names_the_python_only_for_kdumpys_loader() -> None:
    plain = render_early_conf(Sysconfig())
    assert "EARLY_PYTHON" not in plain  # kexec-tools (x86_64): early.conf as before
    with_python = render_early_conf(Sysconfig(), Path("/usr/bin/python 3.11"))
    assert with_python == plain + "EARLY_PYTHON='/usr/bin/python 3.11'\n"


def test_script_entry_is_the_modules() -> None:
    script = (Path(early_python.__file__).parent / "data/early/kdumpy-early.sh").read_text()
    assert f"PY_ENTRY='{early_python.ENTRY}'" in script
    assert 'PYTHONPATH="$EARLY_DIR/python"' in script
    assert early_python.PYTHONPATH == "/kdumpy-early/python"


def test_status_says_which_loader_and_the_python_bytes() -> None:
    state = EarlyState(release=RELEASE, generator="initramfs-tools")
    assert loader_line(state) == "Early stage loader: kexec-tools (kexec)"
    state.loader, state.python_bytes = KDUMPY_LOADER, 3 * 2**20
    line = loader_line(state)
    assert line.startswith("Early stage loader: kdumpy's kexec_load loader")
    assert "its Python adds 3145728 bytes (3.0 MiB" in line


@pytest.mark.parametrize("shell", [s for s in ("dash", "busybox") if shutil.which(s)])
def test_boot_script_runs_the_staged_loader(tmp_path: Path, shell: str) -> None:
    """The real loader, from the staged byte code only, run by the boot script: with no
    vmlinuz in the early directory it fails, and its own message reaches the kernel log."""
    state = tmp_path / "state"
    python, added = stage_python(state, KDUMPY_LOADER)
    assert python == Path(sys.executable).resolve() and added > 0
    files = write_loader_files(state, Sysconfig(), python)
    early = files["loader"].parent
    # Lay it out as the hook does: byte code under $EARLY_DIR/python.
    shutil.copytree(early / "python/kdumpy-early/python", early / "python-staged")
    shutil.rmtree(early / "python")
    (early / "python-staged").rename(early / "python")
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    (sysfs / "kexec_crash_loaded").write_text("0\n")
    (sysfs / "kexec_crash_size").write_text("268435456\n")
    (tmp_path / "cmdline").write_text("ro rd.earlykdump\n")
    env = {
        "PATH": os.environ["PATH"],
        "EARLY_DIR": str(early),
        "PROC_CMDLINE": str(tmp_path / "cmdline"),
        "CPUINFO": str(tmp_path / "nocpuinfo"),
        "SYSFS_KERNEL": str(sysfs),
        "KMSG": str(tmp_path / "kmsg"),
    }
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    got = subprocess.run([*argv, str(files["loader"]), "load"], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    kmsg = (tmp_path / "kmsg").read_text().splitlines()
    assert got.returncode == 1, got.stderr
    assert "(kdumpy kexec_load)" in kmsg[-2]
    assert kmsg[-1].startswith("<3>")
    assert kmsg[-1].endswith(f"kexec: failed to load early-kdump kernel: kdumpy: {early}/vmlinuz: "
                             "No such file or directory")  # fmt: skip


def test_probe_finds_kdumpy_found_only_through_site(tmp_path: Path) -> None:
    """Distributions find kdumpy through a .pth file, which the probe's ``-S`` skips: the
    probe must still name kdumpy's root itself (the arm64 guest's case)."""
    src = Path(early_python.__file__).parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(src)!r})\n"
        "from kdumpy.service import early_python as e\n"
        "r = e.measure(e.find_python()); print(sorted(r.kdumpy))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "kdumpy.arch.arm64.kexec_load" in got.stdout
