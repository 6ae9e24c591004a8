"""kdumpy reserve's edits of /etc/default/grub (the Debian path; grubby is RHEL's)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kdumpy.service import bootloader
from kdumpy.service.bootloader import edit_grub_default, plan

DEBIAN_GRUB = """\
# If you change this file, run 'update-grub' afterwards to update
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX_DEFAULT="quiet crashkernel=128M"
GRUB_CMDLINE_LINUX="console=ttyS0 crashkernel=384M-:128M"
"""


def test_edit_replaces_every_crashkernel() -> None:
    new = edit_grub_default(DEBIAN_GRUB, "2G-64G:256M,64G-:512M")
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in new
    assert 'GRUB_CMDLINE_LINUX="console=ttyS0 crashkernel=2G-64G:256M,64G-:512M"' in new
    assert new.count("crashkernel=") == 1
    assert new.startswith("# If you change")


def test_edit_adds_line_when_missing() -> None:
    assert edit_grub_default("GRUB_TIMEOUT=5\n", "256M").endswith(
        'GRUB_CMDLINE_LINUX="crashkernel=256M"\n'
    )


def test_edited_file_is_still_valid_shell(tmp_path: Path) -> None:
    """update-grub sources the file: the shell must read back our value."""
    path = tmp_path / "grub"
    path.write_text(edit_grub_default(DEBIAN_GRUB, "512M,high"))
    out = subprocess.run(
        ["sh", "-c", f'. {path}; printf "%s" "$GRUB_CMDLINE_LINUX"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "console=ttyS0 crashkernel=512M,high"


def test_plan_shows_diff_then_apply_writes(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "grub"
    path.write_text(DEBIAN_GRUB)
    path.chmod(0o644)
    monkeypatch.setattr(bootloader.shutil, "which", lambda name: None)  # no grubby, no update-grub
    change = plan("256M", path)
    assert change.method == "grub-default"
    assert "-GRUB_CMDLINE_LINUX=" in change.description
    assert '+GRUB_CMDLINE_LINUX="console=ttyS0 crashkernel=256M"' in change.description
    assert path.read_text() == DEBIAN_GRUB, "plan must not change anything"
    notes = bootloader.apply(change)
    assert "crashkernel=256M" in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert any("regenerate grub.cfg by hand" in n for n in notes)
