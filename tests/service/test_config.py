"""kdump.conf parsing against RHEL kdump-utils' documented semantics (kdump.conf(5),
kdumpctl's parse_config): the expectations come from that documentation, not from our
output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.service.config import (
    DEFAULT_CORE_COLLECTOR,
    ConfigError,
    load_config,
    parse_config,
    render_config,
)

# A config in the shape of RHEL's stock kdump.conf: long comment block, the three
# active directives, commented-out examples of every target.
STOCK = """\
# Lines like this one are comments.
#
#raw /dev/vg/lv_kdump
#ext4 UUID=03138356-5e61-4ab3-b58e-27507ac41937
#nfs my.server.com:/export/tmp
#ssh user@my.server.com
auto_reset_crashkernel yes
path /var/crash
core_collector makedumpfile -l --message-level 7 -d 31
#failure_action shell
"""


def test_stock_config_gives_defaults() -> None:
    cfg = parse_config(STOCK, "kdump.conf")
    assert cfg.target is None  # no target: path on whatever fs holds it
    assert cfg.path == "/var/crash"
    assert cfg.core_collector == ("makedumpfile", "-l", "--message-level", "7", "-d", "31")
    assert cfg.failure_action == "reboot" and cfg.final_action == "reboot"
    assert cfg.auto_reset_crashkernel is True
    assert cfg.sshkey == "/root/.ssh/kdump_id_rsa"


def test_empty_config_defaults() -> None:
    cfg = parse_config("", "kdump.conf")
    assert cfg.path == "/var/crash" and cfg.core_collector == DEFAULT_CORE_COLLECTOR


@pytest.mark.parametrize(
    ("line", "kind", "spec"),
    [
        ("raw /dev/vg/lv_kdump", "raw", "/dev/vg/lv_kdump"),
        ("ext4 /dev/vg/lv_kdump", "ext4", "/dev/vg/lv_kdump"),
        ("ext4 LABEL=/boot", "ext4", "LABEL=/boot"),
        (
            "xfs UUID=03138356-5e61-4ab3-b58e-27507ac41937",
            "xfs",
            "UUID=03138356-5e61-4ab3-b58e-27507ac41937",
        ),
        ("btrfs /dev/sdb1", "btrfs", "/dev/sdb1"),
        ("ext3 /dev/sdb1", "ext3", "/dev/sdb1"),
        ("ext2 /dev/sdb1", "ext2", "/dev/sdb1"),
        ("minix /dev/sdb1", "minix", "/dev/sdb1"),
        ("virtiofs myfs", "virtiofs", "myfs"),
        ("nfs my.server.com:/export/tmp", "nfs", "my.server.com:/export/tmp"),
        ("nfs [2001:db8::1:2:3:4]:/export/tmp", "nfs", "[2001:db8::1:2:3:4]:/export/tmp"),
        ("ssh user@my.server.com", "ssh", "user@my.server.com"),
        ("ssh user@2001:db8::1:2:3:4", "ssh", "user@2001:db8::1:2:3:4"),
    ],
)
def test_documented_targets(line: str, kind: str, spec: str) -> None:
    cfg = parse_config(line + "\n", "kdump.conf")
    assert cfg.target is not None
    assert (cfg.target.kind, cfg.target.spec) == (kind, spec)


def test_target_parts() -> None:
    nfs = parse_config("nfs [2001:db8::1]:/export/tmp", "k").target
    assert nfs is not None and (nfs.nfs_host, nfs.nfs_export) == ("2001:db8::1", "/export/tmp")
    ssh = parse_config("ssh user@2001:db8::1:2:3:4", "k").target
    assert ssh is not None and (ssh.ssh_user, ssh.ssh_host) == ("user", "2001:db8::1:2:3:4")
    assert ssh.is_remote and ssh.needs_flat


def test_comments_and_quotes() -> None:
    text = (
        'path "/var/crash dir"   # where dumps go\n  # indented comment\nfinal_action poweroff#x\n'
    )
    cfg = parse_config(text, "kdump.conf")
    assert cfg.path == "/var/crash dir"
    assert cfg.final_action == "poweroff"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path /a\npath /b\n", "kdump.conf:2: duplicated kdump config value of option path"),
        ("ssh a@b\nnfs h:/x\n", "kdump.conf:2: more than one dump target specified"),
        ("ext4 /dev/sda1\nxfs /dev/sdb1\n", "kdump.conf:2: more than one dump target"),
        ("\n\nbogus 1\n", "kdump.conf:3: invalid kdump config option: bogus"),
        ("path\n", "kdump.conf:1: path has no value"),
        ("ssh my.server.com\n", "kdump.conf:1: ssh target must be user@server"),
        ("nfs my.server.com\n", "kdump.conf:1: nfs target must be host:/export"),
        ("ssh -oProxyCommand=sh@h\n", "kdump.conf:1: ssh target must not start with '-'"),
        ("nfs -oremount:/x\n", "kdump.conf:1: nfs target must not start with '-'"),
        ("raw sdb1\n", "kdump.conf:1: raw target must be a block device"),
        ("ext4 sdb1\n", "kdump.conf:1: ext4 target must be /dev/"),
        ("failure_action explode\n", "kdump.conf:1: failure_action must be one of"),
        ("final_action shell\n", "kdump.conf:1: final_action must be one of"),
        ("force_rebuild maybe\n", "kdump.conf:1: force_rebuild must be 0 or 1"),
        (
            "force_rebuild 1\nforce_no_rebuild 1\n",
            "kdump.conf:2: force_rebuild and force_no_rebuild",
        ),
        (
            "default shell\nfailure_action reboot\n",
            "kdump.conf:2: both 'default' and 'failure_action'",
        ),
        ("path var/crash\n", "kdump.conf:1: path must be absolute"),
        ("core_collector makedumpfile 'unterminated\n", "kdump.conf:1: No closing quotation"),
        (
            'ext4 /dev/sda1\ndracut_args --mount "/dev/sdb1 /mnt ext4 defaults"\n',
            "kdump.conf:2: dracut_args --mount conflicts with a target",
        ),
        (
            'dracut_args --mount "/dev/a /m ext4" --mount "/dev/b /n ext4"\n',
            "kdump.conf:1: multiple mount targets",
        ),
    ],
)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "kdump.conf")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name", ["net", "options", "link_delay", "disk_timeout", "debug_mem_level", "blacklist"]
)
def test_deprecated_options_are_errors(name: str) -> None:
    with pytest.raises(ConfigError, match=f"kdump.conf:1: deprecated kdump config option: {name}"):
        parse_config(f"{name} something\n", "kdump.conf")


def test_default_is_a_deprecated_alias() -> None:
    cfg = parse_config("default shell\n", "kdump.conf")
    assert cfg.failure_action == "shell"
    assert cfg.warnings and "kdump.conf:1" in cfg.warnings[0]


def test_lists_and_hooks() -> None:
    text = (
        "extra_bins /usr/bin/lftp /usr/local/bin/tool\n"
        "extra_modules gfs2 dm_mod\n"
        "kdump_pre /var/crash/scripts/kdump-pre.sh\n"
        "kdump_post /var/crash/scripts/kdump-post.sh\n"
        "kdump_emergency /usr/local/bin/emergency\n"
        "fence_kdump_args -p 7410 -f auto -c 0 -i 10\n"
        "fence_kdump_nodes node1 node2\n"
        'dracut_args --omit-drivers "cfg80211 snd" --add-drivers "ext2 ext3"\n'
        "auto_reset_crashkernel no\n"
        "sshkey /root/.ssh/other\n"
    )
    cfg = parse_config(text, "kdump.conf")
    assert cfg.extra_bins == ("/usr/bin/lftp", "/usr/local/bin/tool")
    assert cfg.extra_modules == ("gfs2", "dm_mod")
    assert cfg.kdump_pre == "/var/crash/scripts/kdump-pre.sh"
    assert cfg.kdump_post == "/var/crash/scripts/kdump-post.sh"
    assert cfg.kdump_emergency == "/usr/local/bin/emergency"
    assert cfg.fence_kdump_args == ("-p", "7410", "-f", "auto", "-c", "0", "-i", "10")
    assert cfg.fence_kdump_nodes == ("node1", "node2")
    assert cfg.dracut_args == ("--omit-drivers", "cfg80211 snd", "--add-drivers", "ext2 ext3")
    assert cfg.auto_reset_crashkernel is False
    assert cfg.sshkey == "/root/.ssh/other"
    assert cfg.target is None


def test_dracut_mount_becomes_the_target() -> None:
    cfg = parse_config('dracut_args --mount "/dev/sdb1 /mnt/dump xfs rw,noatime"\n', "k")
    assert cfg.target is not None
    assert (cfg.target.kind, cfg.target.spec, cfg.target.mount_options) == (
        "xfs",
        "/dev/sdb1",
        "rw,noatime",
    )
    nfs = parse_config('dracut_args --mount "srv:/export /mnt nfs4 defaults"\n', "k").target
    assert nfs is not None and nfs.kind == "nfs"


@pytest.mark.parametrize(
    ("target", "collector", "expected"),
    [
        # kdump.conf(5): ssh and raw need -F (added), fs and NFS must not have it (stripped).
        ("ssh u@h", "makedumpfile -l -d 31", ["makedumpfile", "-F", "-l", "-d", "31"]),
        ("raw /dev/sdb", "makedumpfile -l -d 31", ["makedumpfile", "-F", "-l", "-d", "31"]),
        ("ssh u@h", "makedumpfile -F -l -d 31", ["makedumpfile", "-F", "-l", "-d", "31"]),
        ("ext4 /dev/sdb", "makedumpfile -F -l -d 31", ["makedumpfile", "-l", "-d", "31"]),
        ("nfs h:/e", "makedumpfile -F -c -d 31", ["makedumpfile", "-c", "-d", "31"]),
        ("", "makedumpfile -F -c", ["makedumpfile", "-c"]),
        ("ssh u@h", "kdumpy collect -l -d 31", ["kdumpy", "collect", "-F", "-l", "-d", "31"]),
        ("ext4 /dev/sdb", "kdumpy collect -F -d 1", ["kdumpy", "collect", "-d", "1"]),
        ("ssh u@h", "scp", ["scp"]),  # other collectors are left alone
        ("ext4 /dev/sdb", "cp --sparse=always", ["cp", "--sparse=always"]),
    ],
)
def test_collector_flat_flag_follows_target(target: str, collector: str, expected: list) -> None:
    text = (target + "\n" if target else "") + f"core_collector {collector}\n"
    assert parse_config(text, "kdump.conf").collector_argv() == expected


def test_render_round_trips() -> None:
    text = (
        "ssh root@10.0.0.1\npath /srv/dumps\ncore_collector makedumpfile -l -d 31\n"
        "failure_action shell\nfinal_action poweroff\nextra_modules 'a b'\n"
    )
    cfg = parse_config(text, "kdump.conf")
    again = parse_config(render_config(cfg), "kdump.conf")
    assert again == cfg


def test_load_config_missing_and_binary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no kdump config file found"):
        load_config(tmp_path / "absent.conf")
    bad = tmp_path / "bin.conf"
    bad.write_bytes(b"\xff\xfe\x00path")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(bad)


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text("ext4 UUID=1234\npath /dumps\n")
    bad = tmp_path / "bad.conf"
    bad.write_text("ext4 UUID=1234\npath /dumps\nnet x\n")
    ok = subprocess.run(
        [sys.executable, "-m", "kdumpy", "config", "check", str(good)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout
    err = subprocess.run(
        [sys.executable, "-m", "kdumpy", "config", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert err.returncode != 0
    assert err.stderr.strip() == (
        f"kdumpy: {bad}:3: deprecated kdump config option: net; see kdump.conf(5) for alternatives"
    )
    assert "Traceback" not in err.stderr
