"""What enable writes on the host: the boot loader change and the generator's files.

The generated scripts are checked by the shells that will run them (``sh -n``, ``bash
-n``); the full path (update-initramfs in a real Debian, a real boot) is in test_guest.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kdumpy.errors import KdumpyError
from kdumpy.service import early_generator
from kdumpy.service.early import write_loader_files
from kdumpy.service.early_cmdline import edit_grub_default, plan_bootloader
from kdumpy.service.early_generator import DRACUT, INITRAMFS_TOOLS, Layout
from kdumpy.service.early_state import EarlyState, write
from kdumpy.service.sysconfig import load_sysconfig

GRUB = """GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="crashkernel=256M"
"""


def test_grub_default_add_and_remove_round_trip() -> None:
    added = edit_grub_default(GRUB, True)
    assert 'GRUB_CMDLINE_LINUX="crashkernel=256M rd.earlykdump"' in added
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in added
    assert edit_grub_default(added, True) == added  # idempotent
    assert edit_grub_default(added, False) == GRUB


def test_grub_default_removes_every_form_and_keeps_quotes() -> None:
    text = (
        "GRUB_CMDLINE_LINUX_DEFAULT='quiet rd.earlykdump=1'\nGRUB_CMDLINE_LINUX='rd.earlykdump'\n"
    )
    assert (
        edit_grub_default(text, False)
        == "GRUB_CMDLINE_LINUX_DEFAULT='quiet'\nGRUB_CMDLINE_LINUX=''\n"
    )
    assert edit_grub_default("GRUB_TIMEOUT=5\n", True).endswith(
        'GRUB_CMDLINE_LINUX="rd.earlykdump"\n'
    )


def test_grub_default_read_back_by_the_shell(tmp_path: Path) -> None:
    """grub-mkconfig sources /etc/default/grub: the shell must see the parameter."""
    path = tmp_path / "grub"
    path.write_text(edit_grub_default(GRUB, True))
    out = subprocess.run(["sh", "-c", f'. {path}; echo "$GRUB_CMDLINE_LINUX"'],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.split() == ["crashkernel=256M", "rd.earlykdump"]


def test_plan_without_any_boot_loader_config_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no grubby
    with pytest.raises(KdumpyError, match=r"grub: not found and grubby is not installed"):
        plan_bootloader(True, tmp_path / "grub")


def test_plan_shows_a_diff(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    path = tmp_path / "grub"
    path.write_text(GRUB)
    change = plan_bootloader(True, path)
    assert change.method == "grub-default"
    assert '+GRUB_CMDLINE_LINUX="crashkernel=256M rd.earlykdump"' in change.description
    assert path.read_text() == GRUB  # planning changes nothing


@pytest.mark.parametrize("generator", [INITRAMFS_TOOLS, DRACUT])
def test_generator_files_install_parse_and_remove(tmp_path: Path, generator: str) -> None:
    layout = Layout(tmp_path)
    written = early_generator.install(generator, layout, Path("/var/lib/kdumpy"), "/usr/sbin/kexec")
    assert early_generator.installed(generator, layout)
    for path in written:
        text = path.read_text()
        assert "@STATE_DIR@" not in text and "@KEXEC@" not in text
        if path.suffix != ".conf":
            assert path.stat().st_mode & 0o111, f"{path} is not executable"
            shell = "bash" if path.name == "module-setup.sh" else "sh"
            subprocess.run([shell, "-n", str(path)], check=True)
    if generator == INITRAMFS_TOOLS:
        hook = layout.it_hook.read_text()
        assert 'copy_exec "/usr/sbin/kexec" /sbin' in hook
        assert 'STATE_DIR="/var/lib/kdumpy"' in hook
        # initramfs-tools asks every script for its prerequisites first.
        for script in (layout.it_hook, layout.it_init_top):
            out = subprocess.run(["sh", str(script), "prereqs"], capture_output=True, text=True)
            assert out.returncode == 0 and out.stdout.strip() == ""
    else:
        assert "kdumpy-early" in layout.dracut_conf.read_text()
    removed = early_generator.remove(generator, layout)
    assert sorted(removed) == sorted(written)
    assert not any(p.exists() for p in written)
    assert not early_generator.installed(generator, layout)


def test_unknown_generator_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(KdumpyError, match="unknown initramfs generator 'mkinitcpio'"):
        early_generator.install("mkinitcpio", Layout(tmp_path), tmp_path, "/sbin/kexec")


def test_newest_system_initramfs_wins_over_a_stale_one(tmp_path: Path) -> None:
    """A Debian system switched to dracut: initrd.img-R is current, initramfs-R.img stale."""
    import os

    from kdumpy.service.early_generator import DRACUT, INITRAMFS_TOOLS, system_initramfs

    boot = tmp_path / "boot"
    boot.mkdir()
    stale, current = boot / "initramfs-6.1.img", boot / "initrd.img-6.1"
    stale.write_bytes(b"old")
    current.write_bytes(b"new")
    os.utime(stale, (1_000_000, 1_000_000))
    for generator in (DRACUT, INITRAMFS_TOOLS):
        assert system_initramfs(generator, "6.1", tmp_path) == current
    os.utime(current, (1_000, 1_000))
    assert system_initramfs(DRACUT, "6.1", tmp_path) == stale


def test_early_files_are_private_from_the_start(tmp_path: Path) -> None:
    # The early files feed an initramfs that carries the capture kernel and the ssh key:
    # state directories 0700 (an existing 0755 one is narrowed), files with their final mode.
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    sysconfig_file = tmp_path / "kdump"
    sysconfig_file.write_text("")
    files = write_loader_files(state, load_sysconfig(sysconfig_file))
    record = write(state, EarlyState(release="6.1.0-test", generator="initramfs-tools"))
    modes = {p: p.stat().st_mode & 0o777 for p in (state, state / "early", record, *files.values())}
    assert modes == {
        state: 0o700,
        state / "early": 0o700,
        record: 0o600,
        files["early.conf"]: 0o600,
        files["loader"]: 0o700,
    }
    assert not [p for p in (state / "early").iterdir() if p.name.startswith(".")]
