"""makedumpfile's erase filter (--config with the -dbg vmlinux): the record of what was
erased (kdump: after the page data, ELF: an ERASEINFO note) and the erased bytes."""

from __future__ import annotations

import pytest

from kdumpy.vmcore import open_dump

pytestmark = [pytest.mark.vm, pytest.mark.slow]

CONFIG = "[vmlinux]\nerase jiffies_64\nerase init_uts_ns.name.nodename\n"


@pytest.mark.parametrize("fmt", ["-l", "-E"])
def test_eraseinfo(lab_dump_61, mdf, tmp_path_factory, fmt: str) -> None:  # noqa: ANN001
    vmlinux = lab_dump_61.kernel.dbg_vmlinux()
    if not vmlinux.exists():
        pytest.skip(f"no -dbg vmlinux at {vmlinux}")
    conf = tmp_path_factory.mktemp("erase") / "erase.conf"
    conf.write_text(CONFIG)
    args = [fmt, "-d", "31", "--config", str(conf), "-x", str(vmlinux)]
    (out,) = mdf(lab_dump_61.vmcore, f"erase{fmt}-d31", args)
    with open_dump(out) as dump, open_dump(lab_dump_61.vmcore) as src:
        # makedumpfile's format: one "erase SYMBOL size N" line per directive; the
        # sizes are the kernel's (u64, and new_utsname fields of 65 bytes).
        assert dump.eraseinfo == (
            "erase jiffies_64 size 8\nerase init_uts_ns.name.nodename size 65\n"
        )
        uts = dump.vmcoreinfo.require("SYMBOL(init_uts_ns)")
        assert dump.read_virt(uts + 65, 65) == b"X" * 65  # nodename poisoned with 'X'
        assert dump.read_virt(uts, 65) == src.read_virt(uts, 65)  # sysname untouched
        assert src.read_virt(uts + 65, 65) != b"X" * 65
