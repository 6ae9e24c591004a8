"""The table walks of kdumpy.tables (issue 14, speed): the C functions
(kdumpy._tables) against the Python ones on the synthetic kernel's BTF and kallsyms,
whole, truncated at every length and corrupted at random, and name lookups in BTF against
a brute-force reading of every record through the record API."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy import tables as walk
from kdumpy.analysis import Program
from kdumpy.analysis.btf import (
    _FIXED_WORDS,
    _PER_WORDS,
    _TAG_KINDS,
    _UNNAMED_KINDS,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_FWD,
    KIND_VAR,
    Btf,
)
from kdumpy.errors import DumpFormatError

native = pytest.importorskip("kdumpy._tables", reason="kdumpy._tables is not built")


def _outcome(fn, *args):
    """A walk's result, or that it refused (ValueError), to compare C with Python."""
    try:
        return fn(*args)
    except ValueError:
        return ValueError


@pytest.fixture(scope="module")
def btf_blob(prog: Program) -> bytes:
    start = prog.symbols.address_of("__start_BTF")
    stop = prog.symbols.address_of("__stop_BTF")
    assert start is not None and stop is not None
    return prog.memory.read(start, stop - start)


def _types_section(blob: bytes) -> bytes:
    hdr_len, type_off, type_len = struct.unpack_from("<III", blob, 4)[:3]
    return blob[hdr_len + type_off : hdr_len + type_off + type_len]


def test_btf_records_whole_truncated_and_corrupt(btf_blob: bytes) -> None:
    types = _types_section(btf_blob)
    whole = native.btf_records(types, _FIXED_WORDS, _PER_WORDS)
    assert whole == walk.btf_records_py(types, _FIXED_WORDS, _PER_WORDS)
    assert len(walk.u32s(whole[0])) > 50
    for cut in range(len(types)):  # every length: whole words or not, records cut
        part = types[:cut]
        got = _outcome(native.btf_records, part, _FIXED_WORDS, _PER_WORDS)
        assert got == _outcome(walk.btf_records_py, part, _FIXED_WORDS, _PER_WORDS), cut
    rng = random.Random(14)
    for _ in range(300):  # info words (kind, vlen) and other words set at random
        bad = bytearray(types)
        for _ in range(rng.randint(1, 4)):
            at = 4 * rng.randrange(len(types) // 4)
            bad[at : at + 4] = rng.getrandbits(32).to_bytes(4, "little")
        got = _outcome(native.btf_records, bytes(bad), _FIXED_WORDS, _PER_WORDS)
        assert got == _outcome(walk.btf_records_py, bytes(bad), _FIXED_WORDS, _PER_WORDS)


def test_a_truncated_or_corrupt_btf_blob_is_a_one_line_error(btf_blob: bytes) -> None:
    for cut in (0, 10, 24, len(btf_blob) // 2, len(btf_blob) - 1):
        with pytest.raises(DumpFormatError):
            Btf(btf_blob[:cut])
    hdr_len, type_off, type_len = struct.unpack_from("<III", btf_blob, 4)[:3]
    bad = bytearray(btf_blob)
    # The last record claims 0xffff members: it runs past the section.
    info_at = hdr_len + type_off + 4
    bad[info_at : info_at + 4] = struct.pack("<I", 4 << 24 | 0xFFFF)
    with pytest.raises(DumpFormatError, match="truncated"):
        Btf(bytes(bad))


def test_name_hashes_and_matches(btf_blob: bytes) -> None:
    hdr_len, _to, _tl, str_off, str_len = struct.unpack_from("<IIIII", btf_blob, 4)
    strings = btf_blob[hdr_len + str_off : hdr_len + str_off + str_len]
    rng = random.Random(7)
    offs = [rng.randrange(len(strings) + 50) for _ in range(500)] + [0, len(strings) - 1]
    raw = b"".join(o.to_bytes(4, "little") for o in offs)
    for base in (0, 3, 10_000):
        assert native.name_hashes(strings, raw, base) == walk.name_hashes_py(strings, raw, base)
    hashes = native.name_hashes(strings, raw, 0)
    values = [walk.u32s(hashes)[5], 0, -1, 1 << 40, offs[0]]
    many = [*range(0, len(strings), 97), *values]  # one pass over every word
    for words in (hashes, raw, raw[:-2], bytes(4000)):  # zero words: a common value
        for asked in (values, many, [0]):
            assert native.u32_matches(words, asked) == walk.u32_matches_py(words, asked)


def test_kallsyms_walk_and_expand(machine) -> None:
    from synthetic.tables import encode_kallsyms

    symbols = [(name, addr, kind) for kind, name, addr in _kallsyms_of(machine)]
    tables = encode_kallsyms(symbols, symbols[0][1])
    names, count = tables.names, len(symbols)
    tokens = [bytes([b]) for b in range(256)]
    for long_lengths in (True, False):
        walked = native.kallsyms_walk(names, count, long_lengths)
        assert walked == walk.kallsyms_walk_py(names, count, long_lengths)
        expanded = native.kallsyms_expand(names, walked[0], long_lengths, tokens)
        assert expanded == walk.kallsyms_expand_py(names, walked[0], long_lengths, tokens)
        text, types, offsets = expanded
        assert text.split(b"\0")[:-1] == [n.encode() for n, _, _ in symbols]
        for (name, _, _), at in zip(symbols, walk.u32s(offsets), strict=True):
            assert text[at : at + len(name) + 1] == name.encode() + b"\0"
        assert types.decode() == "".join(k for _, _, k in symbols)
    starts = walked[0]
    for cut in range(0, len(names), 7):
        part = names[:cut]
        assert _outcome(native.kallsyms_walk, part, count, True) == _outcome(
            walk.kallsyms_walk_py, part, count, True
        )
        assert _outcome(native.kallsyms_expand, part, starts, True, tokens) == _outcome(
            walk.kallsyms_expand_py, part, starts, True, tokens
        )
    past = starts[:-4] + (len(names) + 5).to_bytes(4, "little")  # an entry past the end
    assert _outcome(native.kallsyms_expand, names, past, True, tokens) is ValueError
    assert _outcome(walk.kallsyms_expand_py, names, past, True, tokens) is ValueError
    seqs = tables.seqs_of_names
    assert native.seqs_check(seqs, count) and walk.seqs_check_py(seqs, count)
    twice = seqs[:3] + seqs[:-3]  # one index twice, another missing
    for bad in (twice, seqs[:-1], b"\xff\xff\xff" + seqs[3:]):
        assert not native.seqs_check(bad, count) and not walk.seqs_check_py(bad, count)


def _kallsyms_of(machine) -> list[tuple[str, str, int]]:
    """The synthetic kernel's symbols (type, name, address), by address."""
    syms = sorted(machine.kernel.symbols.items(), key=lambda item: item[1][0])
    return [(kind, name, addr) for name, (addr, kind) in syms if 0 < len(name) < 100]


def test_btf_lookups_agree_with_every_record(prog: Program) -> None:
    """The oracle reads each record through Btf.record and Btf.name (no hash, no
    search): a definition wins over a forward declaration, the first definition and the
    last declaration of a name; variables and enumerators likewise, in type order."""
    btf = prog.btf
    definitions: dict[tuple[str, str], int] = {}
    declarations: dict[tuple[str, str], int] = {}
    variables: dict[str, int] = {}
    enumerators: dict[str, int] = {}
    for type_id in btf.ids():
        kind, kflag, _vlen, _name_off, _size = btf.record(type_id)
        name = btf.name(type_id)
        if kind == KIND_VAR:
            variables[name] = type_id
        if kind in (KIND_ENUM, KIND_ENUM64):
            for enumerator, value in btf._enumerators(type_id):
                enumerators.setdefault(enumerator, value)
        if not name or kind in _UNNAMED_KINDS:
            continue
        if kind == KIND_FWD:
            declarations[("union" if kflag else "struct", name)] = type_id
        else:
            definitions.setdefault((_TAG_KINDS.get(kind, ""), name), type_id)
    want = declarations | definitions
    assert len(want) > 50 and variables and enumerators
    for (space, name), type_id in want.items():
        assert btf.lookup(name, space) == type_id, (space, name)
    for name, type_id in variables.items():
        assert btf.variable(name) == type_id
    for name, value in enumerators.items():
        assert btf.enumerator(name) == value
    assert btf.lookup("no_such_type_here", "struct") is None
    assert btf.lookup("", "") is None and btf.lookup("é\u1234", "") is None
    assert btf.variable("no_such_var") is None and btf.enumerator("NO_SUCH") is None


def test_kallsyms_addresses_in_every_encoding() -> None:
    rng = random.Random(3)
    values = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF] + [rng.getrandbits(32) for _ in range(200)]
    raw = b"".join(v.to_bytes(4, "little") for v in values)
    for encoding in range(3):
        for base, table in ((0xFFFFFFFF81000000, 0xFFFFFFFF82000000), (0, 0), ((1 << 64) - 8, 5)):
            got = native.kallsyms_addresses(raw, encoding, base, table)
            assert got == walk.kallsyms_addresses_py(raw, encoding, base, table)
            signed = [v - (1 << 32) if v >> 31 else v for v in values]
            want = [
                [(base + v) % (1 << 64) for v in values],
                [s if s >= 0 else (base - 1 - s) % (1 << 64) for s in signed],
                [(table + 4 * i + s) % (1 << 64) for i, s in enumerate(signed)],
            ][encoding]
            assert list(walk.le_array("Q", got)) == want
    with pytest.raises(ValueError):
        native.kallsyms_addresses(raw, 3, 0, 0)
    ascending = b"".join(v.to_bytes(8, "little") for v in (1, 1, 2, 1 << 63, (1 << 64) - 1))
    for data, want_sorted in ((ascending, True), (ascending[8:] + ascending[:8], False)):
        assert native.u64_sorted(data) is want_sorted
        assert walk.u64_sorted_py(data) is want_sorted


_WITHOUT_C = """
import sys
sys.modules["kdumpy._tables"] = None  # as if built without a compiler
import kdumpy.tables as tables
assert tables.btf_records is tables.btf_records_py
from kdumpy.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("line", ["sys", "ps", "bt", "sym -l", "struct task_struct -o"])
def test_commands_answer_the_same_without_the_c_extension(
    synthetic_vmcore: Path, line: str
) -> None:
    argv = ["crash", str(synthetic_vmcore), "-c", line]
    with_c = subprocess.run([sys.executable, "-m", "kdumpy", *argv], capture_output=True,
                            text=True, check=True)  # fmt: skip
    without = subprocess.run([sys.executable, "-c", _WITHOUT_C, *argv], capture_output=True,
                             text=True, check=True)  # fmt: skip
    assert with_c.stdout.strip() and without.stdout == with_c.stdout
