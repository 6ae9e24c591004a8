"""Issue 17's attacks on the first kernel's files: the capture initramfs being written
(finding 2), the state directory, the unit's umask, and the service lock (finding 11).

The attacker is the real ``nobody`` (setpriv).  The lock tests run ``kdumpy status`` in a
private mount namespace on a fresh tmpfs /run (with a 1777 /run/lock, as on the real
system), so the machine's own /run is never touched.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from unprivileged import as_nobody, isolated, need_root, shared_dir

from kdumpy.service import teststatus
from kdumpy.service.image import Entry, Image
from kdumpy.service.paths import ServicePaths
from kdumpy.service.unit import render_unit

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + os.urandom(96 * 1024).hex().encode()


def _release(fifo: Path, writer: threading.Thread) -> None:
    """Let the writer's read of *fifo* end (EOF), once it is waiting on it."""
    while writer.is_alive():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.02)
            continue
        os.close(fd)
        break
    writer.join(30)


def test_initramfs_being_written_is_never_readable_by_others(tmp_path):
    """Finding 2: the archive (with the ssh dump key) is written under a temporary name in
    the state directory.  While it is written (held open here by an entry read from a
    FIFO), nobody tries to read it, as root's umask 022 and a 0755 directory allowed."""
    need_root()
    image = Image()
    image.add_bytes("/root/.ssh/kdump_id_rsa", KEY, 0o600)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    image.entries["/zz-written-last"] = Entry("file", source=fifo)
    with shared_dir(0o755) as state:
        dest = state / "initramfs-kdump.img"
        umask = os.umask(0o022)
        writer = threading.Thread(target=image.write, args=(dest, "none"))
        writer.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                partial = [p for p in state.iterdir() if p.stat().st_size > len(KEY)]
                if partial:
                    break
                time.sleep(0.02)
            (tmp,) = partial
            read = as_nobody(["cat", str(tmp)])
            mode = stat.S_IMODE(tmp.stat().st_mode)
        finally:
            _release(fifo, writer)
            os.umask(umask)
        assert KEY not in read.stdout
        assert read.returncode != 0 and b"Permission denied" in read.stderr
        assert mode == 0o600
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
        assert KEY in dest.read_bytes()  # uncompressed newc: the key is in the archive
        assert sorted(p.name for p in state.iterdir()) == [dest.name]


def test_state_dir_is_made_root_only(tmp_path):
    """A state directory left 0755 (by an older kdumpy, or made by hand) is narrowed to
    0700 when kdumpy writes in it."""
    state = tmp_path / "kdumpy"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    paths = ServicePaths(config=tmp_path / "kdump.conf", state_dir=state)
    teststatus.write(paths, teststatus.TestStatus("pending", "1700000000-1"))
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.test_status.stat().st_mode) == 0o600


def test_unit_runs_with_a_private_umask():
    """Files the service writes are root's alone whatever the system's default umask."""
    service = render_unit().split("[Service]")[1].split("[Install]")[0]
    assert "\nUMask=0077\n" in service


def _status(tmp_path: Path, attack: str) -> subprocess.CompletedProcess:
    """``kdumpy status`` (which takes the service lock) after nobody ran *attack* on a fresh
    /run whose /run/lock is 1777."""
    conf = tmp_path / "kdump.conf"
    conf.write_text(f"path {tmp_path}\n")
    setup = (
        "mount -t tmpfs -o mode=0755 tmpfs /run\nmkdir -m 1777 /run/lock\n"
        f"setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '{attack}'\n"
    )
    run = f"timeout 20 {sys.executable} -m kdumpy status --config {conf}"
    # The holder of the second test is stopped once status returned (or gave up).
    stop = "kill $(cat /run/lock/holder.pid) 2>/dev/null"
    return isolated(setup, ["sh", "-c", f"{run}; rc=$?; {stop}; exit $rc"], timeout=120)


def test_lock_symlink_planted_by_a_user_is_not_followed(tmp_path):
    """Finding 11: nobody points the lock's name in /run/lock at a file of their choice;
    opening the lock must not create it (O_CREAT through a symlink, as root)."""
    created = tmp_path / "created-by-root"
    proc = _status(tmp_path, f"ln -s {created} /run/lock/kdumpy")
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert not created.exists()


def test_lock_held_by_a_user_does_not_stop_the_service(tmp_path):
    """Finding 11: nobody takes the lock first and holds it; the service must not wait."""
    hold = (
        'flock /run/lock/kdumpy sh -c "echo \\$\\$ > /run/lock/holder.pid; exec sleep 60" '
        ">/dev/null 2>&1 & while [ ! -s /run/lock/holder.pid ]; do sleep 0.05; done"
    )
    started = time.monotonic()
    proc = _status(tmp_path, hold)
    assert "Another app is currently holding the kdump lock" not in proc.stdout
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert time.monotonic() - started < 15
