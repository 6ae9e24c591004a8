"""What the capture runtime's probe is asked to import (pyruntime.entry_modules)."""

from __future__ import annotations

import ast

from kdumpy.service import pyruntime


def test_entry_modules_scan_kdumpy_and_skip_cjk_codecs(monkeypatch) -> None:
    """Lazy imports inside kdumpy's functions count (lzo is imported in a function of
    collect.compress); every encodings module but the CJK ones (which import
    _multibytecodec) is listed.  And the scan stays cheap under emulation: sources are
    parsed for kdumpy's modules and the few codecs that name _multibytecodec, not for
    the whole encodings package (the probe imports those and sees their imports)."""
    parsed: list[str] = []
    real_parse = ast.parse

    def counting_parse(source, filename="<unknown>", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        parsed.append(str(filename))
        return real_parse(source, filename, *args, **kwargs)

    monkeypatch.setattr(pyruntime.ast, "parse", counting_parse)
    names = set(pyruntime.entry_modules())
    assert "lzo" in names and "kdumpy.collect.compress" in names
    assert {"encodings.cp1252", "encodings.idna", "encodings.utf_8"} <= names
    assert not {"encodings.euc_jp", "encodings.gb2312", "encodings.big5"} & names
    assert not any(n.endswith("__main__") for n in names)
    stdlib = [f for f in parsed if "/encodings/" in f]
    assert len(stdlib) == len(set(stdlib)) <= 30, len(stdlib)  # was ~220 parses


FULL = pyruntime.NativePacker(
    functions=frozenset({"pack", "classify", "packbits", "unpackbits", "rebase", "keep_kept",
                         "KINDS"}),
    kinds=frozenset({"zlib", "lzo", "snappy", "zstd"}),
)  # fmt: skip


def test_nothing_is_left_out_without_the_page_packer() -> None:
    assert pyruntime.capture_leave_out(None) == ()


def test_the_full_page_packer_leaves_numpy_and_the_bindings_out() -> None:
    assert set(pyruntime.capture_leave_out(FULL)) == {
        "numpy", "kdumpy.collect.classify_np", "kdumpy.collect.fallback",
        "kdumpy.vmcore.diskdump", "kdumpy.collect.reassemble", "lzo", "cramjam", "zstandard",
    }  # fmt: skip


def test_a_binding_stays_when_the_packer_lacks_its_compression() -> None:
    """Built without libsnappy-dev and libzstd-dev: cramjam and zstandard still compress."""
    packer = pyruntime.NativePacker(FULL.functions, frozenset({"zlib", "lzo"}))
    left = set(pyruntime.capture_leave_out(packer))
    assert "lzo" in left and "numpy" in left
    assert not {"cramjam", "zstandard"} & left


def test_numpy_stays_when_the_packer_lacks_a_function_it_replaces() -> None:
    """An extension without the classifier (an older build): numpy classifies."""
    packer = pyruntime.NativePacker(FULL.functions - {"classify"}, FULL.kinds)
    left = set(pyruntime.capture_leave_out(packer))
    assert not set(pyruntime.NUMPY_PATH) & left
    assert {"lzo", "cramjam", "zstandard"} <= left


def test_native_packer_is_what_the_collector_uses() -> None:
    """The kinds are the ones collect.compress hands to C (its NATIVE list)."""
    from kdumpy.collect import compress

    packer = pyruntime.native_packer()
    if packer is None:
        assert compress.NATIVE == ()
        return
    assert packer.kinds == set(compress.NATIVE) - {"none"}
    assert packer.functions >= pyruntime.NUMPY_REPLACED_BY
