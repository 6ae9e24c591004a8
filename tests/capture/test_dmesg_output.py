"""Finding 12 of issue 17: ``kdumpy dmesg -o`` creates its file 0600, like makedumpfile.

The attacker is the real ``nobody`` in a real 1777 directory (where ``-o /tmp/log`` would
land).  The end-to-end test compares with makedumpfile --dump-dmesg on a real dump.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from unprivileged import as_nobody, need_root, shared_dir

from kdumpy.cli.dmesg import write_atomically

PRECIOUS = b"root's precious file\n"


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(PRECIOUS)
    return path


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_dmesg_output_is_0600_and_never_follows_a_planted_link(victim, umask_022):
    """Finding 12: ``kdumpy dmesg -o`` gave 0644 whatever the umask (makedumpfile: 0600);
    a symlink nobody planted at the name is replaced, its target left alone."""
    need_root()
    with shared_dir() as shared:
        out = shared / "dmesg.txt"
        assert as_nobody(["ln", "-s", str(victim), str(out)]).returncode == 0
        write_atomically(str(out), b"the crashed kernel's log\n")
        info = out.lstat()
        assert stat.S_ISREG(info.st_mode) and info.st_uid == 0
        assert _mode(out) == 0o600
        assert out.read_bytes() == b"the crashed kernel's log\n"
        assert victim.read_bytes() == PRECIOUS
        assert sorted(p.name for p in shared.iterdir()) == ["dmesg.txt"]  # no temp left


def test_dmesg_output_matches_makedumpfile(tmp_path, lab_dump_61):
    """The real command on a real dump: same text and same mode as makedumpfile's."""
    mdf = tmp_path / "mdf.txt"
    subprocess.run(["makedumpfile", "--dump-dmesg", str(lab_dump_61.vmcore), str(mdf)],
                   check=True, capture_output=True)  # fmt: skip
    ours = tmp_path / "ours.txt"
    subprocess.run([sys.executable, "-m", "kdumpy", "dmesg", str(lab_dump_61.vmcore), "-o",
                    str(ours)], check=True)  # fmt: skip
    assert ours.read_bytes() == mdf.read_bytes()
    assert _mode(ours) == _mode(mdf) == 0o600
