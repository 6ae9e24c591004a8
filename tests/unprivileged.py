"""What a local unprivileged user can do, for the tests of issue 17's attacks.

The attacker is the real ``nobody`` (uid/gid 65534, no groups) through ``setpriv``; the
places they reach are real directories with the modes of the real ones (a 1777
``/var/crash``, a 0755 state directory).  pytest's tmp_path lives under a 0700 directory
nobody cannot enter, so :func:`shared_dir` makes one under /tmp.  Where a test must stand
in for a system path (/run, /root/.ssh, /etc/ssh, /proc/sysrq-trigger) it runs in a private
mount namespace (:func:`isolated`), so the machine's own files are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def need_root() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")


def as_nobody(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """Run *argv* as nobody (``setpriv --reuid=65534 --regid=65534 --clear-groups``)."""
    need_root()
    kw.setdefault("capture_output", True)
    return subprocess.run([*SETPRIV, *argv], check=False, **kw)


def nobody_sh(script: str, **kw) -> subprocess.CompletedProcess:
    return as_nobody(["sh", "-c", script], **kw)


@contextlib.contextmanager
def shared_dir(mode: int = 0o1777) -> Iterator[Path]:
    """A directory under /tmp with *mode* (default: world-writable and sticky, like
    /tmp or Ubuntu's /var/crash), removed afterwards with whatever others put in it."""
    path = Path(tempfile.mkdtemp(prefix="kdumpy-shared-", dir="/tmp"))
    try:
        os.chmod(path, mode)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def isolated(setup: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """Run *argv* after the shell commands *setup* in a private mount namespace
    (``unshare -m``): mounts made there are seen by *argv* and its children only."""
    need_root()
    if shutil.which("unshare") is None:
        pytest.skip("unshare not installed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    script = f'set -e\n{setup}\nexec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *argv], check=False, **kw)


def overlay(target: str, work: Path) -> str:
    """Shell commands mounting a writable overlay on *target* (changes land in
    ``work/upper``), for a namespace made by :func:`isolated`."""
    upper, scratch = work / "upper", work / "work"
    upper.mkdir(parents=True, exist_ok=True)
    scratch.mkdir()
    return (
        f"mount -t overlay overlay -o lowerdir={target},upperdir={upper},workdir={scratch} {target}"
    )
