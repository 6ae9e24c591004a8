"""Files by construction (issue 17, deliver 5): kdumpy.fileio.

The attacker is the real ``nobody`` working in a real 1777 directory; modes are read back
with stat, contents byte for byte.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from unprivileged import as_nobody, need_root, shared_dir

from kdumpy.fileio import UnsafePath, atomic_output, create, fresh_dir, private_dir, replace

PRECIOUS = b"root's precious file\n"


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(PRECIOUS)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_create_refuses_existing_names_and_links(tmp_path, victim):
    (tmp_path / "exists").write_bytes(b"x")
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("exists", "link", "dangling"):
        with pytest.raises(FileExistsError):
            create(tmp_path / name)
    assert not (tmp_path / "nowhere").exists() and victim.read_bytes() == PRECIOUS


def test_create_gives_the_final_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        os.close(create(tmp_path / "wide", 0o644))
    finally:
        os.umask(0o022)
    try:
        os.close(create(tmp_path / "private"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "wide") == 0o644 and _mode(tmp_path / "private") == 0o600


def test_atomic_output_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "state"
    replace(path, b"old\n")
    with pytest.raises(RuntimeError), atomic_output(path) as out:
        out.write(b"half of the new")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_private_dir_narrows_our_own(tmp_path):
    ours = tmp_path / "state"
    ours.mkdir(mode=0o755)
    ours.chmod(0o755)
    private_dir(ours)
    assert _mode(ours) == 0o700
    private_dir(tmp_path / "new" / "sub")
    assert _mode(tmp_path / "new" / "sub") == 0o700


def test_private_dir_refuses_a_users_directory_or_link():
    """A state or lock directory nobody made (or pointed elsewhere) is not used."""
    need_root()
    with shared_dir() as shared:
        theirs, link = shared / "theirs", shared / "link"
        assert as_nobody(["mkdir", str(theirs)]).returncode == 0
        assert as_nobody(["ln", "-s", "/etc", str(link)]).returncode == 0
        with pytest.raises(UnsafePath, match=r"owned by uid 65534, not by us"):
            private_dir(theirs)
        with pytest.raises(UnsafePath, match=r"link: not a directory kdumpy can use"):
            private_dir(link)
        assert _mode(Path("/etc")) == 0o755


def test_fresh_dir_is_never_an_existing_one(tmp_path):
    parent = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (tmp_path / "taken").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "taken")
        for name in ("taken", "link"):
            with pytest.raises(FileExistsError):
                fresh_dir(name, dir_fd=parent)
        fd = fresh_dir("new", dir_fd=parent)
        try:
            assert os.fstat(fd).st_ino == (tmp_path / "new").stat().st_ino
        finally:
            os.close(fd)
    finally:
        os.close(parent)
    assert _mode(tmp_path / "new") == 0o700
