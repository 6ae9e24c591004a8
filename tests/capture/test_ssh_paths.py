"""Finding 9 of issue 17: an ssh ``path`` starting with ``-`` is a directory, not an option.

A relative ``path`` is relative to the login directory on the server (root's home for
``root@``), so the test runs a real OpenSSH sshd on the loopback inside a private mount
namespace whose ``/root`` is an overlay: what the server side creates there lands in the
test's directory, never in the machine's /root.  The dump is a small file of known bytes
sent by ``cat`` (a collector kdump.conf allows); tests/capture/test_save_ssh.py saves
real dumps.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from unprivileged import isolated, overlay

DUMP = b"KDUMPY-TEST-DUMP\n" * 64
DIRNAME = "-kdumpy-dumps"

# Runs inside the namespace: an sshd, then the capture.
SCRIPT = """
import json, subprocess, sys
from pathlib import Path
from kdumpy.lab.servers import Sshd

work, path = Path(sys.argv[1]), sys.argv[2]
with Sshd(work / "sshd") as sshd:
    conf = work / "kdump.conf"
    conf.write_text(f"ssh root@127.0.0.1\\nsshkey {sshd.client_key}\\npath {path}\\n"
                    "core_collector cat\\nfinal_action halt\\n")
    (work / "known_hosts").write_text(sshd.known_hosts_line("127.0.0.1"))
    (work / "ssh_config").write_text(sshd.client_config("127.0.0.1"))
    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy.capture", "--config", str(conf), "--vmcore",
         str(work / "vmcore"), "--no-action", "--ssh-config", str(work / "ssh_config"),
         "--known-hosts", str(work / "known_hosts"), "--cmdline", "kdump_test_id=42"],
        capture_output=True, text=True, timeout=300)
print(json.dumps({"returncode": proc.returncode, "stderr": proc.stderr}))
"""


def test_path_starting_with_dash(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "vmcore").write_bytes(DUMP)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    # A directory of that name exists on the server already (an earlier test run, or
    # someone else's): the capture makes a fresh one instead of reusing it.
    saved = tmp_path / "root" / "upper" / DIRNAME
    (saved / "kdump-test-42").mkdir(parents=True)
    argv = [sys.executable, str(script), str(work), DIRNAME]
    proc = isolated(overlay("/root", tmp_path / "root"), argv, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["returncode"] == 0, run["stderr"]
    assert "kdump: would halt" in run["stderr"]
    assert (
        f"{DIRNAME}/kdump-test-42 exists on 127.0.0.1: saving to kdump-test-42-1" in (run["stderr"])
    )
    assert list((saved / "kdump-test-42").iterdir()) == []
    dump_dir = saved / "kdump-test-42-1"
    assert stat.S_IMODE(dump_dir.stat().st_mode) == 0o700
    assert (dump_dir / "vmcore.flat").read_bytes() == DUMP
    assert (dump_dir / "vmcore-creation.status").read_text() == "success\n"
    for path in dump_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
