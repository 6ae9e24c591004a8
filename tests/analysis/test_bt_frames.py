"""`bt -f` (each frame's stack words) against drgn 0.3.0 with the DWARF vmlinux: every
word shown must be what drgn reads at that stack address; a frame's words must span
from its stack pointer to its caller's, as drgn's unwinder (DWARF CFI) found them;
and the last word must be the caller's return address, drgn's next pc.  `bt -l`
needs DWARF line tables: a one-line answer.
"""

from __future__ import annotations

import re

import pytest
from test_kmem import extra_answers

from kdumpy.analysis import Program
from kdumpy.analysis.commands import Session, run_line

pytestmark = pytest.mark.vm

FRAME = re.compile(r"^\s*#(\d+) \[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)")
WORDS = re.compile(r"^    ([0-9a-f]+): ((?:[0-9a-f]{16} )+)$")


@pytest.fixture(scope="module")
def session(lab_dump):
    with Program.open(lab_dump.vmcore) as prog:
        yield Session(prog)


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
    [("-l", "-l needs DWARF line tables"), ("-q", "unknown option -q"),
     ("-f 999999", "invalid task or pid value: 999999")],
)  # fmt: skip
def test_bt_bad_options_are_one_line(session, args, message):
    out = run_line(session, f"bt {args}")
    assert out.startswith("bt: ") and out.count("\n") == 1, out
    assert message in out
