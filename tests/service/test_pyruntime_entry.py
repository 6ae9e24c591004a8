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
