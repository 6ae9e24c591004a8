"""Build the lab's crash-on-purpose kernel module against Debian's headers for a lab kernel.

The module can only be built where the host's gcc matches the compiler that built the kernel
(Debian builds bookworm's 6.1 with gcc-12, the host's; newer suites use newer compilers), so
the module crash methods are offered for those kernels only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.cache import cache_root, locked
from kdumpy.lab.kernels import AptSuite, LabKernel

DATA = Path(__file__).with_name("data")
MODULE = "kdumpy_crash"


def kernel_compiler(kernel: LabKernel) -> str:
    """The gcc program name the kernel was built with, from its config (e.g. "gcc-12")."""
    text = kernel.config("CC_VERSION_TEXT") or ""
    m = re.match(r"(?:x86_64-linux-gnu-)?(gcc-\d+)", text)
    if not m:
        raise KdumpyError(f"{kernel.release}: unknown compiler '{text}'")
    return m.group(1)


def crash_module(kernel: LabKernel) -> Path:
    """Path of kdumpy_crash.ko for *kernel*, building it on first use."""
    out = cache_root() / "testmodule" / kernel.release / f"{MODULE}.ko"
    if out.exists():
        return out
    compiler = kernel_compiler(kernel)
    if shutil.which(compiler) is None:
        raise KdumpyError(
            f"the test module for {kernel.release} needs {compiler}, which this host lacks"
        )
    if shutil.which("make") is None:
        raise KdumpyError("make not found: install make")
    with locked(f"testmodule-{kernel.release}"):
        if not out.exists():
            headers = _headers(kernel)
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copy(DATA / f"{MODULE}.c", tmp)
                Path(tmp, "Kbuild").write_text(f"obj-m := {MODULE}.o\n")
                proc = subprocess.run(
                    ["make", "-s", "-C", str(headers), f"M={tmp}", "modules"],
                    capture_output=True,
                    text=True,
                )
                built = Path(tmp, f"{MODULE}.ko")
                if proc.returncode != 0 or not built.exists():
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
                    raise KdumpyError(f"building the test module failed: {tail[0]}")
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(built, out.with_suffix(".tmp"))
                out.with_suffix(".tmp").rename(out)
    return out


def _headers(kernel: LabKernel) -> Path:
    """Debian's linux-headers for *kernel*, unpacked and made relocatable."""
    root = cache_root() / "headers" / kernel.release
    tree = root / "usr" / "src" / f"linux-headers-{kernel.release}"
    if tree.exists():
        return tree
    apt = AptSuite(kernel.suite, kernel.arch)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        todo, seen = [f"linux-headers-{kernel.release}"], set()
        while todo:
            pkg = todo.pop()
            if pkg in seen:
                continue
            seen.add(pkg)
            try:
                deb = apt.download(pkg, Path(tmp))
            except KdumpyError:
                apt.update()
                deb = apt.download(pkg, Path(tmp))
            subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
            todo += [
                d
                for d in apt.depends(pkg)
                if d.startswith(("linux-headers-", "linux-kbuild-")) and d not in seen
            ]
    partial.rename(root)
    # Debian's per-flavour Makefile includes the common tree by absolute path.
    makefile = tree / "Makefile"
    makefile.write_text(
        makefile.read_text().replace("include /usr/src/", f"include {root}/usr/src/")
    )
    return tree
