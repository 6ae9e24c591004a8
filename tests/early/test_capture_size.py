"""The capture initramfs rides in the system initramfs and kexec_file_load hashes and copies
every byte of it at boot, and every byte of it is crashkernel memory, so what capture never
uses is left out (pyruntime.LEAVE_OUT_*, and capture_leave_out(): numpy and the compression
bindings where kdumpy's page packer is built).  Built with this machine's Python, unpacked
with GNU cpio and run in a chroot: what is left out is absent, what stands in for it still
lets everything import, and the shipped collector saves a dump there, byte for byte as
makedumpfile does."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from kdumpy.service import pyruntime

LEFT_OUT = pyruntime.capture_leave_out(pyruntime.native_packer())

CHECK = """
import codecs, importlib.util, socket
import kdumpy.capture, kdumpy.collect, kdumpy.vmcore
if importlib.util.find_spec("hashlib"):  # shipped when a capture module imports it
    import hashlib, hmac
    assert hashlib.sha256(b"kdumpy").hexdigest().startswith("{sha256}")
    assert hmac.new(b"k", b"m", "sha256").digest()
assert codecs.lookup("idna").name == "idna"
if importlib.util.find_spec("numpy"):  # no page packer built: numpy classifies
    import numpy
    assert int((numpy.arange(4, dtype=numpy.uint8) + 1).sum()) == 10
    try:
        numpy.linalg.inv(numpy.eye(2))
    except AttributeError as exc:
        assert "not in the kdump capture initramfs" in str(exc), exc
    else:
        raise AssertionError("numpy.linalg worked: its LAPACK backend was shipped")
print("left out, still imports")
"""
# Non-hostonly 6.1 with this machine's Python (pyenv 3.11, numpy's wheel with OpenBLAS):
# 22,185,758 B with numpy and the bindings, 8,744,235 B without them.
MAX_SIZE_WITH_PACKER = 10_000_000
FAKECORE = Path(__file__).parents[1] / "collect" / "fakecore.py"


@pytest.fixture(scope="module")
def capture_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    return opts.output


@pytest.fixture(scope="module")
def capture_root(capture_image: Path) -> Path:
    work = capture_image.parent
    root = work / "root"
    root.mkdir()
    raw = subprocess.run(["zstd", "-dc", str(capture_image)], capture_output=True, check=True)
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
    if LEFT_OUT:
        # The page packer does numpy's and the bindings' work; its libraries came with it.
        assert not dirs & {"numpy", "zstandard", "cramjam"}, dirs & {"numpy", "zstandard"}
        assert not [n for n in files if n.startswith(("lzo.", "diskdump.", "classify_np."))]
        packer = [n for n in files if n.startswith("_pagepack.")]
        assert packer and all(n.endswith(".so") for n in packer), packer
        for lib in ("liblzo2.so", "libz.so"):
            assert [n for n in files if n.startswith(lib)], lib
    else:
        linalg = [p for p in capture_root.rglob("_umath_linalg*")]
        assert linalg and all(p.suffix == ".pyc" for p in linalg), linalg  # the stub, not .so


def test_capture_initramfs_size(capture_image: Path) -> None:
    if not LEFT_OUT:
        pytest.skip("kdumpy.collect._pagepack is not built: numpy and the bindings ship")
    size = capture_image.stat().st_size
    assert size < MAX_SIZE_WITH_PACKER, size


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


def _fakecore() -> ModuleType:
    """tests/collect/fakecore.py (that directory is on sys.path only for its own tests)."""
    spec = importlib.util.spec_from_file_location("fakecore", FAKECORE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_collector_saves_as_makedumpfile(capture_root: Path, tmp_path: Path) -> None:
    """The capture initramfs's own kdumpy collect (its page packer and the libraries that
    came with it, nothing from the host) writes makedumpfile's file from a vmcore."""
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed")
    fakecore = _fakecore()
    machine = fakecore.FakeMachine(pages=2048)
    for pfn in range(1550, 2048, 3):
        machine.put(pfn * fakecore.PAGE, bytes([pfn & 0xFF or 1]) * 300 + pfn.to_bytes(4, "little"))
    vmcore = machine.write(capture_root / "vmcore")
    script = (". /etc/kdumpy/init.env; export PYTHONPATH=$KDUMP_PYTHONPATH; "
              "kdumpy collect -l --message-level 0 -d 1 /vmcore /out")  # fmt: skip
    try:
        proc = subprocess.run(["chroot", str(capture_root), "/bin/sh", "-c", script],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        theirs = tmp_path / "theirs"
        subprocess.run(["makedumpfile", "-l", "--message-level", "0", "-d", "1", str(vmcore),
                        str(theirs)], check=True, capture_output=True)  # fmt: skip
        assert (capture_root / "out").read_bytes() == theirs.read_bytes()
    finally:
        vmcore.unlink()
        (capture_root / "out").unlink(missing_ok=True)
