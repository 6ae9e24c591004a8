"""The early stage in the system initramfs, for the generator the system uses.

initramfs-tools (Debian, Ubuntu): a hook in /etc/initramfs-tools/hooks copies the capture
kernel, its initramfs, kexec and the loader into the image; a script in
/etc/initramfs-tools/scripts/init-top runs the loader first thing (``00-`` sorts it
before the other init-top scripts: initramfs-tools runs independent scripts in name
order).  dracut (RHEL, Fedora, SUSE): a module directory with the same content, added to
every build through /etc/dracut.conf.d so that a later ``dracut -f`` (a kernel update)
keeps it.

The loader's system call helper is kexec-tools' ``kexec -s -p`` (kexec_file_load, as
``kdumpy start`` uses; ``kexec -p`` when the kernel lacks it).  It costs about 0.5 MiB
in the image (kexec and its libxen* libraries; libc is there already) beside the ~32 MiB
of capture kernel and capture initramfs it carries, and the initramfs has no Python;
a helper of our own would save under 2 % of the growth (benchmarks/early_bench.py).
Where the early stage runs kdumpy's kexec_load loader instead (arm64 kernels without
kexec_file_load), the initramfs-tools hook copies python3 and the staged byte code
(:mod:`kdumpy.service.early_python`) in place of kexec.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kdumpy import fileio
from kdumpy.errors import KdumpyError

DATA = Path(__file__).parent / "data" / "early"
INITRAMFS_TOOLS = "initramfs-tools"
DRACUT = "dracut"
GENERATORS = (INITRAMFS_TOOLS, DRACUT)


@dataclass(frozen=True)
class Layout:
    """Where the early stage's files go under ``root`` (``/`` on a real system)."""

    root: Path = Path("/")

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def it_hook(self) -> Path:
        return self._at("/etc/initramfs-tools/hooks/kdumpy-early")

    @property
    def it_init_top(self) -> Path:
        return self._at("/etc/initramfs-tools/scripts/init-top/00-kdumpy-early")

    @property
    def dracut_module(self) -> Path:
        return self._at("/usr/lib/dracut/modules.d/99kdumpy-early")

    @property
    def dracut_conf(self) -> Path:
        return self._at("/etc/dracut.conf.d/99-kdumpy-early.conf")

    def files(self, generator: str) -> list[Path]:
        if generator == INITRAMFS_TOOLS:
            return [self.it_hook, self.it_init_top]
        return [self.dracut_module / "module-setup.sh", self.dracut_module / "kdumpy-early-hook.sh",
                self.dracut_conf]  # fmt: skip


def detect(root: Path = Path("/")) -> str:
    """The initramfs generator this system uses (initramfs-tools wins if both are there)."""
    if (root / "usr/share/initramfs-tools/init").exists() and shutil.which("update-initramfs"):
        return INITRAMFS_TOOLS
    if shutil.which("dracut"):
        return DRACUT
    raise KdumpyError("neither initramfs-tools (update-initramfs) nor dracut is installed")


def _write(path: Path, text: str, mode: int) -> None:
    """Write atomically with ``mode`` from the start (O_EXCL temporary name, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.replace(path, text.encode(), mode)


def _template(name: str, state_dir: Path, kexec: str) -> str:
    text = (DATA / name).read_text()
    return text.replace("@STATE_DIR@", str(state_dir)).replace("@KEXEC@", kexec)


def install(generator: str, layout: Layout, state_dir: Path, kexec: str) -> list[Path]:
    """Put the hook/script (or dracut module and conf) in place; return the files written."""
    if generator == INITRAMFS_TOOLS:
        _write(layout.it_hook, _template("initramfs-tools-hook.sh", state_dir, kexec), 0o755)
        _write(
            layout.it_init_top, _template("initramfs-tools-init-top.sh", state_dir, kexec), 0o755
        )
    elif generator == DRACUT:
        module = layout.dracut_module
        _write(
            module / "module-setup.sh", _template("dracut-module-setup.sh", state_dir, kexec), 0o755
        )
        _write(
            module / "kdumpy-early-hook.sh", _template("dracut-hook.sh", state_dir, kexec), 0o755
        )
        _write(layout.dracut_conf, 'add_dracutmodules+=" kdumpy-early "\n', 0o644)
    else:
        raise KdumpyError(
            f"unknown initramfs generator {generator!r} (use {' or '.join(GENERATORS)})"
        )
    return layout.files(generator)


def remove(generator: str, layout: Layout) -> list[Path]:
    """Remove what install() wrote; return what was there."""
    removed = [p for p in layout.files(generator) if p.exists()]
    for path in removed:
        path.unlink()
    if generator == DRACUT and layout.dracut_module.is_dir():
        shutil.rmtree(layout.dracut_module)
    return removed


def installed(generator: str, layout: Layout) -> bool:
    return all(p.exists() for p in layout.files(generator))


def system_initramfs(generator: str, release: str, root: Path = Path("/")) -> Path:
    """The system initramfs the boot loader loads for ``release``.

    Debian names it initrd.img-R whichever generator made it, Fedora/RHEL initramfs-R.img;
    a system switched from one generator to the other may keep a stale file under the other
    name, so the newest existing file wins (right after regeneration, the one just made).
    """
    names = [f"initrd.img-{release}", f"initramfs-{release}.img", f"initrd-{release}"]
    if generator == DRACUT:
        names.reverse()
    existing = [root / "boot" / n for n in names if (root / "boot" / n).exists()]
    if existing:
        return max(existing, key=lambda p: p.stat().st_mtime)  # ties: the generator's name
    return root / "boot" / names[0]


def regenerate_command(generator: str, release: str) -> list[str]:
    if generator == INITRAMFS_TOOLS:
        return ["update-initramfs", "-u", "-k", release]
    return ["dracut", "-f", "--kver", release]


def regenerate(generator: str, release: str) -> str:
    """Rebuild the system initramfs of ``release``; return the tool's warnings (stderr)."""
    cmd = regenerate_command(generator, release)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise KdumpyError(f"{cmd[0]} not found") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise KdumpyError(f"{' '.join(cmd)} failed: {lines[-1] if lines else proc.returncode}")
    return proc.stderr
