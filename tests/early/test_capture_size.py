"""The capture initramfs rides in the system initramfs and kexec_file_load hashes and copies
every byte of it at boot, so what capture never uses is left out (pyruntime.LEAVE_OUT_*).
Built with this machine's Python, unpacked with GNU cpio and run in a chroot: what is left
out is absent, and what stands in for it still lets everything import."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHECK = """
import codecs, importlib.util, socket
import numpy, kdumpy.capture, kdumpy.collect, kdumpy.vmcore
if importlib.util.find_spec("hashlib"):  # shipped when a capture module imports it
    import hashlib, hmac
    assert hashlib.sha256(b"kdumpy").hexdigest().startswith("{sha256}")
    assert hmac.new(b"k", b"m", "sha256").digest()
assert codecs.lookup("idna").name == "idna"
assert int((numpy.arange(4, dtype=numpy.uint8) + 1).sum()) == 10
try:
    numpy.linalg.inv(numpy.eye(2))
except AttributeError as exc:
    assert "not in the kdump capture initramfs" in str(exc), exc
else:
    raise AssertionError("numpy.linalg worked: its LAPACK backend was shipped")
print("left out, still imports")
"""


@pytest.fixture(scope="module")
def capture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdumpy.lab.kernels import get_kernel
    from kdumpy.service.config import parse_config
    from kdumpy.service.initramfs import BuildOptions, build_initramfs

    for tool in ("busybox", "cpio", "chroot", "zstd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    kernel = get_kernel("6.1")
    work = tmp_path_factory.mktemp("capture-size")
    opts = BuildOptions(release=kernel.release, output=work / "initrd.img",
                        modules_dir=kernel.modules_dir, kernel_config=kernel.config_file,
                        hostonly=False, extra_modules=["virtio_pci", "virtio_blk"])  # fmt: skip
    build_initramfs(parse_config("ext4 LABEL=x\npath /d\n", "t.conf"), opts, lambda _: None)
    root = work / "root"
    root.mkdir()
    raw = subprocess.run(["zstd", "-dc", str(opts.output)], capture_output=True, check=True)
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames", "--nonmatching",
                    "dev/*"], input=raw.stdout, cwd=root, check=True)  # fmt: skip
    return root


def test_left_out_modules_are_absent(capture_root: Path) -> None:
    files = [p.name for p in capture_root.rglob("*")]
    assert not [n for n in files if n.startswith(("_hashlib.", "libcrypto.so"))]
    assert not [n for n in files if n.startswith(("_codecs_jp", "_multibytecodec"))]
    # kdumpy crash's dependencies are main dependencies, but capture never imports them.
    dirs = {p.name for p in capture_root.rglob("*") if p.is_dir()}
    assert not dirs & {"prompt_toolkit", "capstone", "analysis"}, dirs & {"prompt_toolkit"}
    linalg = [p for p in capture_root.rglob("_umath_linalg*")]
    assert linalg and all(p.suffix == ".pyc" for p in linalg), linalg  # the stub, not the .so


def test_capture_runtime_imports_without_them(capture_root: Path) -> None:
    import hashlib

    check = CHECK.format(sha256=hashlib.sha256(b"kdumpy").hexdigest()[:16])
    (capture_root / "check.py").write_text(check)
    script = (
        '. /etc/kdumpy/init.env; export PYTHONPATH=$KDUMP_PYTHONPATH; "$KDUMP_PYTHON" -S /check.py'
    )
    proc = subprocess.run(["chroot", str(capture_root), "/bin/sh", "-c", script],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "left out, still imports"
    assert "was not found" not in proc.stderr  # hashlib found a fallback for every hash
