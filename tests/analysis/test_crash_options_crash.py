"""crash's options (``files -d/-p/-c/-R``, ``net -a``, ``ipcs -n``, ``irq -d``,
``timer -r``, ``search -x``, ``dev -i/-p/-d/-D``) beside crash 8.0.2 itself, with the
DWARF vmlinux, on the 6.1 lab dump: every line of output, word by word.

The command lines are drgn_crash_options_oracle.py's (addresses found by drgn's
helpers).  crash 8.0.2 cannot read 6.1's whole task list (vm-lab-notes.md): a pid other
than the active tasks' is unknown to it, so the lines naming the workload's ``sleep``
are left to the drgn comparison (test_crash_options_drgn.py), which runs on every lab
kernel; crash cannot read 6.12 or 7.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from analysis_oracle import dbg_vmlinux, drgn_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("crash") is None, reason="crash is not installed"),
]
ORACLE = Path(__file__).with_name("drgn_crash_options_oracle.py")
KEYS = ("files_c", "files_d", "files_d_console", "files_p", "files_R_path", "files_R_inode",
        "files_R_fd", "files_R_c", "net_a", "ipcs_n", "ipcs_n_m", "irq_d", "timer_r",
        "timer_r_C", "search_x", "search_x_w", "search_x_h", "dev_i", "dev_p", "dev_d",
        "dev_D")  # fmt: skip


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def outputs(lab_dump_61) -> dict[str, tuple[str, str]]:
    """{key: (crash's output, kdumpy's)}: crash runs every line in one session, each
    after an ``echo`` marking where its output starts."""
    lines = {k: drgn_answers(lab_dump_61, ORACLE, "drgnopts1")[k]["line"] for k in KEYS}
    script = "".join(f"echo =={k}==\n{line}\n" for k, line in lines.items()) + "echo ==end==\nq\n"
    vmlinux, vmcore = str(dbg_vmlinux(lab_dump_61.kernel)), str(lab_dump_61.vmcore)
    proc = subprocess.run(["crash", "-s", vmlinux, vmcore], input=script, capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip
    text = proc.stdout
    out = {}
    with Program.open(vmcore) as prog:
        session = Session(prog)
        for k, line in lines.items():
            start = text.index(f"=={k}==\n") + len(f"=={k}==\n")
            ours = run_line(session, line)
            assert not session.failed, ours
            out[k] = (text[start : text.index("\n==", start - 1) + 1], ours)
    return out


@pytest.mark.parametrize("key", KEYS)
def test_options_match_crash(outputs, key):
    """The same lines and words as crash 8.0.2: files' tables and flag names, the IDT,
    the hrtimers with crash's now and times to expiry, the words around search
    matches, the resource trees, PCI buses and disks."""
    theirs, ours = outputs[key]
    assert rows(ours) == rows(theirs)
    if key not in ("net_a", "dev_D"):  # an empty ARP cache prints nothing, -D a header
        assert len(rows(ours)) >= 2
