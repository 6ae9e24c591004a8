"""The arm64 guest's tree, built without a VM: what dpkg -x leaves undone, and its scripts."""

from __future__ import annotations

import subprocess

import pytest

from kdumpy.lab import arm64_guest


def test_configure_makes_the_links_dpkg_would(tmp_path):
    """No dash in the closure: /bin/sh is busybox; awk and numpy's BLAS/LAPACK are found
    through the links update-alternatives would have made; the init and kdumpy's .pth are
    there."""
    multiarch = tmp_path / "usr/lib/aarch64-linux-gnu"
    for sub in ("blas", "lapack"):
        (multiarch / sub).mkdir(parents=True)
        (multiarch / sub / f"lib{sub}.so.3").write_bytes(b"\x7fELF")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/busybox").write_bytes(b"\x7fELF")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/mawk").write_bytes(b"\x7fELF")
    arm64_guest._configure(tmp_path)
    assert (tmp_path / "usr/bin/awk").resolve() == tmp_path / "usr/bin/mawk"
    assert (tmp_path / "bin/sh").readlink().as_posix() == "busybox"
    assert (multiarch / "libblas.so.3").resolve() == multiarch / "blas/libblas.so.3"
    assert (multiarch / "liblapack.so.3").resolve() == multiarch / "lapack/liblapack.so.3"
    init = tmp_path / "sbin/kdumpy-lab-init"
    assert init.stat().st_mode & 0o777 == 0o755
    pth = tmp_path / "usr/lib/python3/dist-packages/kdumpy-lab.pth"
    assert pth.read_text().strip() == "/opt/kdumpy/src"
    assert (tmp_path / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_configure_keeps_a_shell_the_packages_brought(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/sh").symlink_to("dash")
    arm64_guest._configure(tmp_path)
    assert (tmp_path / "bin/sh").readlink().as_posix() == "dash"


@pytest.mark.parametrize("script", ["BOOT_INIT", "ROOT_INIT"])
def test_init_scripts_parse(script):
    """Both inits are busybox sh scripts: the host's sh -n catches a syntax error before a
    VM boot would."""
    proc = subprocess.run(["sh", "-n"], input=getattr(arm64_guest, script), text=True,
                          capture_output=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_merged_usr_links(tmp_path):
    """trixie's packages ship /usr/lib only: the loader path /lib/ld-linux-aarch64.so.1 must
    resolve; a real /lib (bookworm's packages) is left alone."""
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/ld-linux-aarch64.so.1").write_bytes(b"\x7fELF")
    (tmp_path / "bin").mkdir()
    arm64_guest.merged_usr_links(tmp_path)
    assert (tmp_path / "lib/ld-linux-aarch64.so.1").read_bytes() == b"\x7fELF"
    assert not (tmp_path / "bin").is_symlink()
    assert not (tmp_path / "sbin").exists()  # no usr/sbin: nothing to point at
