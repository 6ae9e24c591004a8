"""The Python runtime the capture kernel needs: interpreter, modules, shared libraries.

The module list is measured, not guessed: a child interpreter imports the capture
entry points (and every module kdumpy's shipped code names in an import statement,
so lazy imports inside functions count too) and reports ``sys.modules`` with each
module's file, i.e. what ``python -X importtime`` would list.  Pure-Python modules go
in as byte code only (``name.pyc`` beside where ``name.py`` would be; Python imports
such files without the source), which roughly halves their size.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import os
import py_compile
import re
import struct
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kdumpy.collect.compress import FLAG_OF
from kdumpy.errors import KdumpyError

# What the capture kernel runs (the capture side's entry point and the filter).
CAPTURE_PACKAGES = ("kdumpy.capture", "kdumpy.collect", "kdumpy.vmcore")
# kdumpy.service.kexec is tiny and lets a test boot exercise kexec_file_load in a guest.
CAPTURE_MODULES = (
    "kdumpy",
    "kdumpy.errors",
    "kdumpy.service",
    "kdumpy.service.config",
    "kdumpy.service.kexec",
    # `python -m` goes through runpy (-> importlib.util -> importlib._abc); a probe that
    # imports the entry modules directly never loads them.
    "runpy",
    "importlib.util",
)
# The command line layer: the capture reads the kernel log with a child `kdumpy dmesg`
# (a reader bug cannot take the capture down); `kdumpy collect ...` as a core_collector
# runs in the capture's process (kdumpy.collect.command), and kdumpy.cli.collect (a few
# lines over it) stays for a core_collector that names `python3 -m kdumpy collect`.
CLI_MODULES = ("kdumpy.cli", "kdumpy.cli.collect", "kdumpy.cli.dmesg", "kdumpy.__main__")

_PROBE = r"""
import importlib, json, sys, types
names = json.loads(sys.argv[1])
leave_out = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {"block": [], "stubs": {}}
for name in leave_out["block"]:
    sys.modules[name] = None  # `import name` raises ImportError, as when it is not shipped
for name, source in leave_out["stubs"].items():
    stub = types.ModuleType(name)
    exec(compile(source, name, "exec"), stub.__dict__)
    sys.modules[name] = stub
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append([name, repr(exc)])
mods = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
print(json.dumps({"modules": mods, "failed": failed, "path": sys.path}))
"""


# Left out of the capture initramfs when the capture modules import without them (the
# probe runs with them blocked or stubbed; if anything then fails, it runs again without):
# - _hashlib: hashlib and hmac fall back to the interpreter's own _md5/_sha* modules, and
#   libcrypto (~2 MB compressed) stays out.
# - numpy.linalg._umath_linalg: `import numpy` imports numpy.linalg, whose LAPACK backend
#   (Debian: liblapack + libgfortran + libquadmath, ~4.7 MB compressed) the capture side
#   never calls; a stub module stands in and fails loudly if anything ever does.
# Every MiB of capture initramfs costs early kdump ~20-30 ms of kexec_file_load under TCG
# (sha256 for purgatory, copy) and the system initramfs unpack at boot.
LEAVE_OUT_BLOCK = ("_hashlib",)
LEAVE_OUT_STUBS = ("numpy.linalg._umath_linalg",)
_STUB_SOURCE = """\
\"\"\"Stand-in for {name} in the kdump capture initramfs (left out for size).\"\"\"


def __getattr__(attr):
    raise AttributeError("{name}.%s: not in the kdump capture initramfs" % attr)
"""
# What kdumpy's compiled page packer (kdumpy.collect._pagepack, built by setup.py) does in
# place of Python packages, and what the capture kernel then never imports (issues 13, 15:
# every byte of the capture initramfs is crashkernel memory on every server):
# - with all of NUMPY_REPLACED_BY in the extension, the collector's classifier, bitmaps and
#   descriptors run in C (collect.classify/bitmap/compress import numpy's versions only
#   when the extension lacks them): numpy, the numpy classifier and the numpy fallback stay
#   out, and with them the kdump-compressed reader (vmcore.diskdump, numpy arrays) and
#   --reassemble, which reads kdump-compressed files (the capture reads /proc/vmcore, an
#   ELF file; a flattened stream is rebuilt on the SSH server, not in the capture kernel);
# - a compression the extension packs needs no Python binding (collect.compress imports the
#   binding only for a kind the extension was built without; vmcore.compression's
#   decompressors serve only the kdump-compressed reader).
NUMPY_REPLACED_BY = frozenset({"classify", "packbits", "unpackbits", "rebase", "keep_kept"})
NUMPY_PATH = (
    "numpy",
    "kdumpy.collect.classify_np",
    "kdumpy.collect.fallback",
    "kdumpy.vmcore.diskdump",
    "kdumpy.collect.reassemble",
)
BINDING_OF = {"lzo": "lzo", "snappy": "cramjam", "zstd": "zstandard"}
NATIVE_MODULE = "kdumpy.collect._pagepack"


@dataclass(frozen=True)
class NativePacker:
    """What the built page packer provides: its functions and the compressions it packs."""

    functions: frozenset[str]
    kinds: frozenset[str]  # names from collect.compress.COMPRESSIONS


def native_packer() -> NativePacker | None:
    """The page packer this interpreter imports (the one the capture initramfs ships: its
    shared libraries follow it there through add_elf), or None when it is not built."""
    try:
        ext = importlib.import_module(NATIVE_MODULE)
    except ImportError:
        return None
    flags = set(ext.KINDS)
    kinds = frozenset(name for name, flag in FLAG_OF.items() if flag in flags and flag)
    return NativePacker(frozenset(vars(ext)), kinds)


def capture_leave_out(packer: NativePacker | None) -> tuple[str, ...]:
    """Modules (with their submodules) the capture initramfs leaves out given *packer*:
    only what the extension replaces, so nothing is left out without it."""
    if packer is None:
        return ()
    names: list[str] = []
    if packer.functions >= NUMPY_REPLACED_BY:
        names += NUMPY_PATH
    names += [binding for kind, binding in BINDING_OF.items() if kind in packer.kinds]
    return tuple(names)


def _is_under(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


# Where stub modules go in the image (path of the .py they stand for) -> their source;
# compile_module() compiles these instead of reading a file.
_STUB_FILES: dict[Path, str] = {}


def stub_source(name: str) -> str:
    return _STUB_SOURCE.format(name=name)


@dataclass
class PythonRuntime:
    """The files of a Python runtime for the initramfs."""

    executable: Path
    prefix: Path
    modules: dict[str, Path] = field(default_factory=dict)  # name -> file (.py/.so)
    path_entries: list[str] = field(default_factory=list)  # non-stdlib sys.path dirs used
    missing: list[str] = field(default_factory=list)  # entry modules that are not there
    left_out: tuple[str, ...] = ()  # capture_leave_out()'s modules, when the probe allowed it

    @property
    def extensions(self) -> list[Path]:
        return [p for p in self.modules.values() if p.suffix == ".so"]


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """find_spec that treats a parent package failing to import as "not there"."""
    try:
        return importlib.util.find_spec(name)
    except Exception:  # a work-in-progress package may not import at all
        return None


def shipped_packages() -> list[str]:
    """kdumpy packages that exist in this installation (capture may still be in progress)."""
    return [n for n in CAPTURE_PACKAGES if _find_spec(n) is not None]


def package_modules(package: str) -> list[str]:
    """Every module of a kdumpy package, by walking its directory (not importing it)."""
    spec = _find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return [package]
    root = Path(next(iter(spec.submodule_search_locations)))
    names = [package]
    for py in sorted(root.rglob("*.py")):
        rel = py.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if parts and "__pycache__" not in rel.parts:
            names.append(".".join([package, *parts]))
    return names


def imported_names(module: str) -> set[str]:
    """Absolute module names a kdumpy module's source imports anywhere (static scan)."""
    spec = _find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return set()
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _uses_multibytecodec(module: str) -> bool:
    """Whether *module* imports _multibytecodec; a module whose source never names it is
    not parsed (a text search costs far less than ``ast`` on a codec's tables)."""
    spec = _find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return False
    if "_multibytecodec" not in Path(spec.origin).read_text(errors="replace"):
        return False
    return "_multibytecodec" in imported_names(module)


# Stdlib packages whose modules are imported by name at run time, out of a probe's sight:
# codecs.lookup("idna") (socket.getaddrinfo on a str host) imports encodings.idna.
WHOLE_STDLIB_PACKAGES = ("encodings",)


def entry_modules() -> list[str]:
    """Everything the capture kernel may import, before following imports."""
    names = set(CAPTURE_MODULES)
    for package in WHOLE_STDLIB_PACKAGES:
        # Not the CJK codecs (_multibytecodec and the _codecs_* libraries, ~0.5 MB
        # compressed): dumps are bytes, and the console and paths are ASCII/UTF-8.
        names.update(n for n in package_modules(package) if not _uses_multibytecodec(n))
    for package in shipped_packages():
        names.update(package_modules(package))
    names.update(n for n in CLI_MODULES if _find_spec(n) is not None)
    # kdumpy's own modules only: the standard library's imports are the probe's to see (it
    # imports each of these modules), and parsing ~120 encodings modules again cost most
    # of `kdumpy rebuild`'s time in an emulated guest.
    for kdumpy_module in [n for n in names if n.partition(".")[0] == "kdumpy"]:
        names.update(imported_names(kdumpy_module))
    # Running __main__ modules would start the program; their imports are in the scan.
    return sorted(n for n in names if not n.endswith("__main__"))


def names_with_main() -> list[str]:
    """The ``__main__`` modules of kdumpy and its shipped packages."""
    return [f"{p}.__main__" for p in ["kdumpy", *shipped_packages()]]


def probe(
    names: list[str],
    python: str = sys.executable,
    block: tuple[str, ...] = (),
    stubs: tuple[str, ...] = (),
) -> dict:
    """Import ``names`` in a child interpreter; return its sys.modules files and sys.path.

    ``block``: modules made unimportable first; ``stubs``: modules replaced by a stub.
    The answer's ``stderr`` is the child's (hashlib logs there when a fallback is missing).
    """
    # The child must find kdumpy where we do (PYTHONPATH included), with no other tuning.
    env = {k: v for k, v in os.environ.items() if k == "PYTHONPATH" or not k.startswith("PYTHON")}
    leave_out = {"block": list(block), "stubs": {n: stub_source(n) for n in stubs}}
    proc = subprocess.run(
        [python, "-c", _PROBE, json.dumps(names), json.dumps(leave_out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise KdumpyError(f"{python}: probing the capture modules failed: {proc.stderr.strip()}")
    result = json.loads(proc.stdout)
    result["stderr"] = proc.stderr
    return result


def _probe_leaving_out(
    names: list[str], capture: tuple[str, ...] = ()
) -> tuple[dict, tuple[str, ...], tuple[str, ...]]:
    """The probe with LEAVE_OUT_* and *capture* (capture_leave_out()) applied, unless that
    breaks an import; and the stubs and capture modules it left out.  *capture*'s modules
    are neither imported nor importable: a kept module that needs one fails to import."""
    kept = [n for n in names if not _is_under(n, capture)]
    reduced = probe(kept, block=(*LEAVE_OUT_BLOCK, *capture), stubs=LEAVE_OUT_STUBS)
    left_out = (*LEAVE_OUT_BLOCK, *LEAVE_OUT_STUBS, *capture, "capture initramfs")
    # A whole name ("import of numpy halted"), not a prefix (kdumpy.vmcore.diskdump_format).
    mentions = re.compile("|".join(rf"(?<![\w.]){re.escape(w)}(?!\w)" for w in left_out))
    broken = any(mentions.search(err) for _, err in reduced["failed"])
    broken |= bool({n for n, _ in reduced["failed"]} & set(CAPTURE_MODULES))
    if broken or "was not found" in reduced["stderr"]:  # hashlib: no fallback for a hash
        return probe(names), (), ()
    return reduced, LEAVE_OUT_STUBS, capture


def find_runtime() -> PythonRuntime:
    """Measure the runtime needed for the capture side with this interpreter."""
    names = entry_modules()
    result, stubs, left_out = _probe_leaving_out(names, capture_leave_out(native_packer()))
    runtime = PythonRuntime(Path(sys.executable).resolve(), Path(sys.prefix), left_out=left_out)
    paths = sysconfig.get_paths()
    stdlib = {
        paths["stdlib"],
        paths["platstdlib"],
        os.path.join(paths["platstdlib"], "lib-dynload"),
    }
    entries = sorted((p for p in result["path"] if p), key=len, reverse=True)
    for name, file in result["modules"].items():
        if not file or not file.endswith((".py", ".so")):
            continue  # built-in, frozen or namespace package
        runtime.modules[name] = Path(file)
        owner = next((p for p in entries if file.startswith(p.rstrip("/") + "/")), None)
        if owner and owner.rstrip("/") not in stdlib and owner not in runtime.path_entries:
            runtime.path_entries.append(owner)
    add_pure_packages(runtime)
    for name in stubs:
        parent, _, leaf = name.rpartition(".")
        package = runtime.modules.get(parent)
        if package is not None and package.name == "__init__.py":
            path = package.parent / f"{leaf}.py"
            _STUB_FILES[path] = stub_source(name)
            runtime.modules[name] = path
    # __main__ modules were not imported (that would run them) but `python -m` needs them.
    for name in names_with_main():
        spec = _find_spec(name)
        if spec is not None and spec.origin:
            runtime.modules[name] = Path(spec.origin)
    runtime.missing = [n for n in CAPTURE_PACKAGES if n not in shipped_packages()]
    runtime.missing += [n for n, _ in result["failed"] if n in CAPTURE_MODULES]
    return runtime


def add_pure_packages(runtime: PythonRuntime) -> None:
    """Ship third-party pure-Python packages whole: their lazy imports (rich imports
    rich._emoji_codes only when rendering) are invisible to an import probe.  Packages
    with extension modules (numpy) stay trimmed to what was imported."""
    roots = [
        file.parent
        for name, file in list(runtime.modules.items())
        if "." not in name
        and name != "kdumpy"
        and file.name == "__init__.py"
        and any(str(file).startswith(p + "/") for p in runtime.path_entries)
    ]
    for root in roots:
        if any(root.rglob("*.so")):
            continue
        for py in root.rglob("*.py"):
            rel = py.relative_to(root.parent).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "__pycache__" not in rel.parts and "tests" not in parts:
                runtime.modules.setdefault(".".join(parts), py)


def cached_bytecode(source: Path) -> bytes | None:
    """The interpreter's own __pycache__ entry for ``source`` if it is fresh (its header
    records the source's mtime and size): reusing it saves most of the build time."""
    try:
        cache = Path(importlib.util.cache_from_source(str(source)))
        data = cache.read_bytes()
        st = source.stat()
    except (OSError, NotImplementedError, ValueError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags, mtime, size = struct.unpack_from("<III", data, 4)
    fresh = flags == 0 and mtime == int(st.st_mtime) & 0xFFFFFFFF
    return data if fresh and size == st.st_size & 0xFFFFFFFF else None


def compile_module(source: Path) -> bytes:
    """Byte code for a .py file: the fresh cached .pyc, else compiled now (hash-based).
    A stub module (LEAVE_OUT_STUBS) is compiled from its generated source."""
    if source in _STUB_FILES:
        return _compile_source(_STUB_FILES[source], source)
    cached = cached_bytecode(source)
    if cached is not None:
        return cached
    return _py_compile(source, source)


def _compile_source(text: str, dfile: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stub.py"
        src.write_text(text)
        return _py_compile(src, dfile)


def _py_compile(source: Path, dfile: Path) -> bytes:
    """Hash-based byte code of *source*, recorded as coming from *dfile*."""
    with tempfile.TemporaryDirectory() as tmp:
        cfile = Path(tmp) / "m.pyc"
        try:
            py_compile.compile(
                str(source),
                cfile=str(cfile),
                dfile=str(dfile),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError as exc:
            raise KdumpyError(f"{dfile}: cannot compile: {exc.msg}") from None
        return cfile.read_bytes()
