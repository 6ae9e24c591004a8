"""Build small initramfs archives for lab guests: busybox, static helpers, kernel modules.

This is the lab's own bench tool (it shells out to ``cpio``); the capture initramfs that kdumpy
ships to servers is built by :mod:`kdumpy.service` instead.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import zstandard

from kdumpy.errors import KdumpyError
from kdumpy.lab.kernels import LabKernel

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_busybox() -> Path:
    for cand in BUSYBOX_CANDIDATES:
        if os.access(cand, os.X_OK):
            return Path(cand)
    raise KdumpyError("busybox not found: install busybox-static")


class Stage:
    """A directory tree that becomes an initramfs."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kdumpy-initramfs-")
        self.root = Path(self._tmp.name)
        for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "etc", "lib", "lib64"):
            (self.root / d).mkdir()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def add_file(self, src: Path, dest: str, mode: int | None = None) -> None:
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        if mode is not None:
            target.chmod(mode)

    def add_text(self, dest: str, text: str, mode: int = 0o644) -> None:
        target = self.root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def add_busybox(self) -> None:
        """Busybox with a link per applet (the binary first: it does not list itself)."""
        busybox = find_busybox()
        self.add_file(busybox, "bin/busybox", 0o755)
        applets = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            link = self.root / applet
            if link.name == "busybox" or link.exists():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")

    def add_binary(self, path: str) -> None:
        """A dynamically linked program with the shared libraries ``ldd`` names."""
        src = shutil.which(path) or path
        if not os.access(src, os.X_OK):
            raise KdumpyError(f"{path} not found")
        self.add_file(Path(src), f"sbin/{Path(src).name}", 0o755)
        out = subprocess.run(["ldd", src], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
            if lib.startswith("/"):
                self.add_file(Path(lib), lib)

    def add_modules(self, kernel: LabKernel, names: list[str]) -> list[str]:
        """Copy *names* and their dependencies, decompressed; return them in load order."""
        order = module_load_order(kernel, names)
        for rel in order:
            src = kernel.modules_dir / rel
            dest = self.root / "lib" / "modules" / module_file_name(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(decompress_module(src))
        return [module_file_name(rel) for rel in order]

    def build(self, out: Path) -> Path:
        """Write a gzip-compressed newc cpio archive of the stage to *out*."""
        if shutil.which("cpio") is None:
            raise KdumpyError("cpio not found: install cpio")
        files = subprocess.run(
            ["find", "."], cwd=self.root, capture_output=True, text=True, check=True
        ).stdout
        archive = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
            cwd=self.root,
            input=files.encode(),
            capture_output=True,
            check=True,
        ).stdout
        tmp = out.with_name(out.name + ".tmp")
        with gzip.open(tmp, "wb", compresslevel=1) as fh:
            fh.write(archive)
        tmp.rename(out)
        return out


def module_name(path: str) -> str:
    base = Path(path).name
    return base.split(".ko")[0].replace("-", "_")


def module_file_name(rel: str) -> str:
    return module_name(rel) + ".ko"


def module_load_order(kernel: LabKernel, names: list[str]) -> list[str]:
    """Module files (relative to the modules dir) needed for *names*, dependencies first.

    Built-in modules are skipped; an unknown module is an error.
    """
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (kernel.modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        by_name[module_name(mod)] = mod
    builtin_file = kernel.modules_dir / "modules.builtin"
    builtin = set()
    if builtin_file.exists():
        builtin = {module_name(x) for x in builtin_file.read_text().split()}
    order: list[str] = []

    def visit(rel: str) -> None:
        if rel in order:
            return
        for dep in reversed(deps.get(rel, [])):
            visit(dep)
        order.append(rel)

    for name in names:
        key = name.replace("-", "_")
        if key in builtin:
            continue
        if key not in by_name:
            raise KdumpyError(f"kernel {kernel.release} has no module {name}")
        visit(by_name[key])
    return order


def decompress_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data
