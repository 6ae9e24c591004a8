"""`bt -f` (each frame's stack words) against drgn 0.3.0 with the DWARF vmlinux: every
word shown must be what drgn reads at that stack address; a frame's words must span
from its stack pointer to its caller's, as drgn's unwinder (DWARF CFI) found them;
and the last word must be the caller's return address, drgn's next pc.  `bt -e`
(exception frames found on the stack) against drgn's stack words and pcs, and against
crash 8.0.2 on the 6.1 dump.  `bt -l` needs DWARF line tables: a one-line answer.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from analysis_oracle import dbg_vmlinux
from test_kmem import extra_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = pytest.mark.vm

FRAME = re.compile(r"^\s*#(\d+) \[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)")
WORDS = re.compile(r"^    ([0-9a-f]+): ((?:[0-9a-f]{16} )+)$")


def frames_and_words(text: str) -> list[tuple[int, dict[int, int]]]:
    """``(pc, {address: word})`` per frame line of a ``bt -f`` answer."""
    out: list[tuple[int, dict[int, int]]] = []
    for line in text.splitlines():
        if m := FRAME.match(line):
            out.append((int(m[4], 16), {}))
        elif (m := WORDS.match(line)) and out:
            for i, word in enumerate(m[2].split()):
                out[-1][1][int(m[1], 16) + 8 * i] = int(word, 16)
    return out


def test_frame_words_match_drgn(session, lab_dump):
    stack = extra_answers(lab_dump)["stack"]
    base, words, pcs = stack["base"], stack["words"], stack["pcs"]
    sp_at = dict(zip(pcs, stack["sps"], strict=True))
    frames = frames_and_words(run_line(session, "bt -f"))
    assert len(frames) >= 5
    shown = 0
    for i, (_pc, contents) in enumerate(frames[:-1]):
        assert contents, f"frame #{i} shows no stack words"
        for address, word in contents.items():
            assert base <= address < base + 8 * len(words), hex(address)
            assert word == words[(address - base) // 8], f"#{i} at {address:#x}"
            shown += 1
        # The frame ends with the return address its caller was called from.
        pc, caller_pc = frames[i][0], frames[i + 1][0]
        assert contents[max(contents)] == caller_pc, f"frame #{i}"
        assert caller_pc in pcs, f"#{i + 1} {caller_pc:#x} is not a drgn frame"
        # ... and holds the stack from this frame's sp up to the caller's (the first
        # frame, interrupted, starts above its saved sp like crash's).
        assert max(contents) + 8 == sp_at[caller_pc], f"frame #{i} end"
        if i and pc in sp_at:
            assert min(contents) == sp_at[pc], f"frame #{i} start"
    assert shown > 20


def test_bt_without_f_shows_no_words(session):
    assert not any(WORDS.match(line) for line in run_line(session, "bt").splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [("-l", "-l: source lines need the vmlinux"), ("-q", "unknown option -q"),
     ("-f 999999", "invalid task or pid value: 999999")],
)  # fmt: skip
def test_bt_bad_options_are_one_line(session, args, message):
    out = run_line(session, f"bt {args}")
    assert out.startswith("bt: ") and out.count("\n") == 1, out
    assert message in out


EFRAME = re.compile(r"^  (KERNEL|USER)-MODE EXCEPTION FRAME AT: ([0-9a-f]+)$")
RIP = re.compile(r"^    RIP: ([0-9a-f]{16})")


def exception_frames(text: str) -> list[tuple[str, int, int]]:
    """``(mode, address, RIP)`` of each frame in a ``bt -e`` answer."""
    out: list[tuple[str, int, int]] = []
    pending: tuple[str, int] | None = None
    for line in text.splitlines():
        if m := EFRAME.match(line):
            pending = (m[1], int(m[2], 16))
        elif (m := RIP.match(line)) and pending:
            out.append((*pending, int(m[1], 16)))
            pending = None
    return out


def test_exception_frames_match_drgn(session, lab_dump):
    """The entry from user space sits at the top of the stack (below the padding that
    FRED kernels keep), and the registers crash_setup_regs saved hold the pc drgn
    starts the crashed thread's trace at; the frames are the stack's own words."""
    stack = extra_answers(lab_dump)["stack"]
    base, words = stack["base"], stack["words"]
    frames = exception_frames(run_line(session, "bt -e"))
    user = [f for f in frames if f[0] == "USER"]
    assert user, frames
    top = base + 8 * len(words)
    assert top - 168 - 32 <= user[-1][1] <= top - 168
    assert any(f[0] == "KERNEL" and f[2] == stack["pcs"][0] for f in frames), frames
    for _mode, address, rip in frames:
        assert words[(address - base) // 8 + 16] == rip  # pt_regs.ip, as drgn read it


@pytest.mark.skipif(shutil.which("crash") is None, reason="crash is not installed")
def test_exception_frames_like_crash(lab_dump_61):
    vmcore = str(lab_dump_61.vmcore)
    crash = ["crash", "-s", str(dbg_vmlinux(lab_dump_61.kernel)), vmcore]
    theirs = subprocess.run(crash, input="bt -e\nq\n", capture_output=True, text=True,
                            timeout=600).stdout  # fmt: skip
    with Program.open(vmcore) as prog:
        ours = run_line(Session(prog), "bt -e")

    def frames_part(text: str) -> str:
        return text[text.index("\n  ") :].strip() if "\n  " in text else ""

    assert "EXCEPTION FRAME" in frames_part(theirs)
    assert frames_part(ours) == frames_part(theirs)
