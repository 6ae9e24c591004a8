"""Property-based fuzzing of kdump.conf and sysconfig parsing (issue 17, Deliver 4).

Seeds are configs as administrators write them: the stock RHEL kdump.conf's directive
lines (kdump-utils gen-kdump-conf.sh, comments left out) and each documented target, and
a sysconfig file with kdump-utils' keys.  hypothesis mutates them line by line: lines
dropped, repeated, swapped, cut, or replaced by a known directive with an arbitrary
value (quotes, ``#``, ``$``, control and non-ASCII characters, option-like values).

Properties: parsing gives a config or a one-line :class:`ConfigError` naming the file,
never another exception; a config that parses renders (the copy for the capture
initramfs) to text that parses back to the same config.

    KDUMPY_FUZZ=long pytest tests/service -k fuzz       # 1000 random examples
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdumpy.service.config import (
    DEPRECATED,
    OTHER_DIRECTIVES,
    TARGET_KINDS,
    ConfigError,
    KdumpConfig,
    parse_config,
    render_config,
)
from kdumpy.service.sysconfig import KNOWN_KEYS, LOG_LEVEL_KEYS, parse_sysconfig

_MODE = os.environ.get("KDUMPY_FUZZ", "")
FUZZ = settings(
    max_examples=int(_MODE) if _MODE.isdigit() else 1000 if _MODE else 150,
    deadline=None,
    derandomize=not _MODE,
    database=settings.default.database if _MODE else None,
    suppress_health_check=[HealthCheck.too_slow],
)

STOCK = """auto_reset_crashkernel yes
path /var/crash
core_collector makedumpfile -l --message-level 7 -d 31
#ssh user@my.server.com
#failure_action shell
"""
TARGETS = [
    "raw /dev/vg/lv_kdump",
    "ext4 UUID=03138356-5e61-4ab3-b58e-27507ac41937",
    "xfs LABEL=/boot",
    "nfs my.server.com:/export/tmp",
    "nfs [2001:db8::1:2:3:4]:/export/tmp",
    "ssh user@my.server.com",
    "virtiofs myfs",
]
EXTRAS = [
    "sshkey /root/.ssh/kdump_id_rsa",
    "kdump_post /var/crash/scripts/kdump-post.sh",
    "kdump_pre /var/crash/scripts/kdump-pre.sh",
    "extra_bins /usr/bin/lftp",
    "extra_modules gfs2",
    "failure_action shell",
    "final_action poweroff",
    "force_rebuild 1",
    'dracut_args --omit-drivers "cfg80211 snd" --add-drivers "ext2 ext3"',
    'dracut_args --mount "/dev/sdb1 /mnt ext4 defaults"',
    "fence_kdump_args -p 7410 -f auto -c 0 -i 10",
    "fence_kdump_nodes node1 node2",
    'core_collector "makedumpfile -F -l -d 31"',
    "default reboot",
]
SYSCONFIG = """KDUMP_KERNELVER=""
KDUMP_COMMANDLINE=""
KDUMP_COMMANDLINE_REMOVE="hugepages hugepagesz slub_debug quiet log_buf_len swiotlb"
KDUMP_COMMANDLINE_APPEND="irqpoll nr_cpus=1 reset_devices novmcoredd"
FADUMP_COMMANDLINE_APPEND=""
KEXEC_ARGS="-s"
KDUMP_IMG="vmlinuz"
KDUMP_IMG_EXT=""
VMCORE_CREATION_NOTIFICATION="yes"
# KDUMP_STDLOGLVL=3
"""

NAMES = sorted(set(TARGET_KINDS) | set(OTHER_DIRECTIVES) | set(DEPRECATED))
VALUES = st.one_of(
    st.sampled_from(["", "yes", "no", "0", "1", "-x", "--", "..", "/", "a#b", '"', '""',
                     "'", "$HOME", "`id`", "\\", "\t", "\x00", "\x1b[2J", "é", "\u2028"]),
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="ascii"), max_size=40),
)  # fmt: skip
CONF_LINE = st.one_of(
    st.sampled_from(TARGETS + EXTRAS + STOCK.splitlines()),
    st.builds(
        lambda n, v, sep: f"{n}{sep}{v}",
        st.sampled_from(NAMES),
        VALUES,
        st.sampled_from([" ", "\t", "  ", ""]),
    ),  # fmt: skip
    st.text(max_size=30),
)
SYS_LINE = st.one_of(
    st.sampled_from(SYSCONFIG.splitlines()),
    st.builds(
        lambda k, v, q: f"{k}={q}{v}{q}",
        st.sampled_from(sorted(set(KNOWN_KEYS) | set(LOG_LEVEL_KEYS))),
        VALUES,
        st.sampled_from(['"', "'", ""]),
    ),  # fmt: skip
    st.text(max_size=30),
)


def edits(line: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, int, str]]]:
    kinds = st.sampled_from(["replace", "insert", "drop", "dup", "cut"])
    return st.lists(st.tuples(kinds, st.integers(0, 50), line), max_size=6)


def apply(seed: str, ops: list[tuple[str, int, str]]) -> str:
    lines = seed.splitlines()
    for kind, where, text in ops:
        i = where % (len(lines) + 1)
        if kind == "insert" or not lines:
            lines.insert(i, text)
            continue
        i %= len(lines)
        if kind == "replace":
            lines[i] = text
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "cut":
            lines[i] = lines[i][: where % (len(lines[i]) + 1)]
    return "\n".join(lines) + "\n"


# What the capture kernel acts on (render_config writes these; the rebuild policy,
# auto_reset_crashkernel and dracut_args belong to the first kernel alone).
CAPTURE_FIELDS = ("target", "path", "core_collector", "kdump_pre", "kdump_post",
                  "kdump_emergency", "extra_bins", "extra_modules", "failure_action",
                  "final_action", "fence_kdump_args", "fence_kdump_nodes")  # fmt: skip


def same(a: KdumpConfig, b: KdumpConfig) -> bool:
    fields = CAPTURE_FIELDS + (("sshkey",) if a.target and a.target.kind == "ssh" else ())
    return all(getattr(a, f) == getattr(b, f) for f in fields)


@FUZZ
@given(seed=st.sampled_from([STOCK] + [STOCK + t + "\n" for t in TARGETS]),
       ops=edits(CONF_LINE))  # fmt: skip
def test_fuzz_kdump_conf(seed: str, ops: list[tuple[str, int, str]]) -> None:
    text = apply(seed, ops)
    try:
        config = parse_config(text, "/etc/kdump.conf")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("/etc/kdump.conf")
        return
    rendered = render_config(config)
    again = parse_config(rendered, "rendered")
    assert same(config, again), rendered


@FUZZ
@given(ops=edits(SYS_LINE))
def test_fuzz_sysconfig(ops: list[tuple[str, int, str]]) -> None:
    text = apply(SYSCONFIG, ops)
    try:
        parse_sysconfig(text, "/etc/sysconfig/kdump")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("/etc/sysconfig/kdump")


def test_seeds_parse() -> None:
    assert parse_config(STOCK, "stock").path == "/var/crash"
    for target in TARGETS:
        kind = target.split()[0]
        config = parse_config(STOCK + target + "\n", "stock")
        assert config.target is not None and config.target.kind == kind
    sys = parse_sysconfig(SYSCONFIG, "sysconfig")
    assert sys.kexec_args == "-s" and sys.vmcore_creation_notification
