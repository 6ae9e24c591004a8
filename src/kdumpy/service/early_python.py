"""Early kdump with kdumpy's own kexec_load loader: the Python it needs in the system initramfs.

Where the kernel lacks kexec_file_load and kdumpy has a kexec_load loader for the machine
(:func:`kdumpy.arch.kexec.legacy_loader`: arm64), kexec-tools' kexec_load is no option
(on Debian 12's arm64 kernel it writes a 16 EiB ELF core header, reach.md 7), so the early
stage runs kdumpy's loader instead.  It needs the system's own python3 and the modules
the loader imports: measured, not guessed, by a child interpreter (``-S``, as at boot)
that imports the loader and runs its ``main`` on a missing kernel (argparse imports
lazily), then reports ``sys.modules`` with each module's file.

:func:`stage` writes them as byte code into the early state directory: standard-library
modules at their own paths (Python finds its prefix from the interpreter's path),
kdumpy's under ``/kdumpy-early/python`` (the loader's PYTHONPATH); the initramfs-tools hook
copies that tree, and ``copy_exec``\\ s the interpreter and the extension modules listed
in ``python.list`` (with the libraries they link).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import kdumpy
from kdumpy import fileio
from kdumpy.errors import KdumpyError
from kdumpy.fileio import private_dir
from kdumpy.service import pyruntime

LOADER_MODULE = "kdumpy.arch.arm64.kexec_load"
# What the early stage runs: the loader's entry, without runpy (-m) or site (-S).
ENTRY = f"from {LOADER_MODULE} import main; raise SystemExit(main())"
# Where kdumpy's modules go in the system initramfs (the loader's PYTHONPATH there).
PYTHONPATH = "/kdumpy-early/python"
# Optional imports of the loader's modules that the early stage does without.
BLOCK = ("zstandard",)

_PROBE = r"""
import json, sys
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None  # optional: not shipped
import contextlib, importlib, io
loader = importlib.import_module(sys.argv[2])
with contextlib.redirect_stderr(io.StringIO()):  # run it: argparse imports lazily
    loader.main(["--kernel", "/nonexistent/vmlinuz"])
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
print(json.dumps({"modules": files, "kdumpy": sys.modules["kdumpy"].__file__}))
"""


@dataclass
class LoaderRuntime:
    """The files the early stage's Python loader needs, measured with ``executable``."""

    executable: Path
    stdlib: dict[str, Path] = field(default_factory=dict)  # name -> .py (shipped as .pyc)
    kdumpy: dict[str, Path] = field(default_factory=dict)  # name -> .py, relative below
    kdumpy_root: Path = Path()  # the directory holding the kdumpy package
    extensions: list[Path] = field(default_factory=list)  # .so modules (copy_exec)


def find_python() -> Path:
    """The interpreter to ship: the one running kdumpy (its byte code is what we compile)."""
    if not sys.executable or not Path(sys.executable).is_file():
        raise KdumpyError(
            "no python3 executable found for early kdump's loader (sys.executable is empty)"
        )
    return Path(sys.executable).resolve()


def probe(python: Path) -> dict:
    """Run the loader in a child ``python -S``; its sys.modules files and kdumpy's place."""
    env = {k: v for k, v in os.environ.items() if k == "PYTHONPATH" or not k.startswith("PYTHON")}
    # -S skips site, hence .pth files (how a distribution may find kdumpy): name our own root.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(kdumpy.__file__).parent.parent), env.get("PYTHONPATH")) if p
    )
    try:
        proc = subprocess.run(
            [str(python), "-S", "-c", _PROBE, json.dumps(BLOCK), LOADER_MODULE],
            capture_output=True, text=True, env=env, check=False, timeout=300,
        )  # fmt: skip
    except OSError as exc:
        raise KdumpyError(f"{python}: cannot run: {exc.strerror}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise KdumpyError(f"{python}: importing kdumpy's kexec_load loader failed: {last}")
    return json.loads(proc.stdout)


def classify(result: dict, python: Path, stdlib_dirs: tuple[Path, ...]) -> LoaderRuntime:
    """Sort the probe's modules: standard library, kdumpy, extension; refuse anything else."""
    root = Path(result["kdumpy"]).parent.parent
    runtime = LoaderRuntime(python, kdumpy_root=root)
    for name, file in sorted(result["modules"].items()):
        if not file or not file.endswith((".py", ".so")):
            continue  # built-in or frozen: inside the interpreter
        path = Path(file)
        if path.suffix == ".so":
            runtime.extensions.append(path)
        elif path.is_relative_to(root / "kdumpy"):
            runtime.kdumpy[name] = path
        elif any(path.is_relative_to(d) for d in stdlib_dirs):
            runtime.stdlib[name] = path
        else:
            raise KdumpyError(
                f"{path}: kdumpy's kexec_load loader imports {name} from outside the "
                "standard library; early kdump cannot ship it"
            )
    return runtime


def measure(python: Path) -> LoaderRuntime:
    """The loader's runtime with ``python`` (the interpreter running kdumpy)."""
    paths = sysconfig.get_paths()
    dirs = (Path(paths["stdlib"]), Path(paths["platstdlib"]))
    return classify(probe(python), python, dirs)


def destination(runtime: LoaderRuntime, name: str, source: Path) -> Path:
    """Where a pure module's byte code goes in the initramfs (absolute)."""
    if name in runtime.kdumpy:
        return Path(PYTHONPATH) / source.relative_to(runtime.kdumpy_root).with_suffix(".pyc")
    return source.with_suffix(".pyc")


def stage(runtime: LoaderRuntime, early_dir: Path) -> int:
    """Write the byte code tree and python.list under ``early_dir``; return the bytes the
    hook adds (the interpreter, the extension modules and the byte code: uncompressed,
    before the libraries they link, which the initramfs mostly has already)."""
    tree = early_dir / "python"
    if tree.exists():
        shutil.rmtree(tree)
    private_dir(tree)
    total = 0
    for name, source in [*runtime.stdlib.items(), *runtime.kdumpy.items()]:
        dest = tree / destination(runtime, name, source).relative_to("/")
        data = pyruntime.compile_module(source)
        # Modes as in a system initramfs (cp -R keeps them); the 0700 early directory
        # keeps other users out.
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fileio.replace(dest, data, 0o644)
        total += len(data)
    # Python finds its exec prefix by this directory (getpath's platstdlib landmark).
    dynload = Path(sysconfig.get_paths()["platstdlib"], "lib-dynload").relative_to("/")
    (tree / dynload).mkdir(parents=True, exist_ok=True, mode=0o755)
    execs = [runtime.executable, *runtime.extensions]
    if any("\n" in str(p) for p in execs):  # python.list is one path a line
        raise KdumpyError(f"{runtime.executable}: a path with a newline cannot be shipped")
    listing = "".join(f"{p}\n" for p in execs)
    fileio.replace(early_dir / "python.list", listing.encode(), 0o600)
    return total + sum(p.stat().st_size for p in execs)


def unstage(early_dir: Path) -> None:
    """Remove what :func:`stage` wrote (the early stage loads with kexec-tools)."""
    (early_dir / "python.list").unlink(missing_ok=True)
    if (early_dir / "python").exists():
        shutil.rmtree(early_dir / "python")
