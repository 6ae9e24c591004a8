"""kdump.conf directives with kdumpctl's verdict and meaning (kdump-utils v1.0.61: kdumpctl
parse_config/need_initrd_rebuild/check_fence_kdump_config, kdump.conf(5)), dracut_args
options mapped onto kdumpy's initramfs, and the capture-side copy of the config parsing
back to the same target (issue 17 findings 7, 10, 15)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kdumpy.service.confcheck import check_fence_nodes
from kdumpy.service.config import ConfigError, Target, parse_config, render_config

VALUES = [
    # (kdump.conf line, attribute, expected, what kdumpctl does)
    ("force_rebuild 1", "force_rebuild", True, "need_initrd_rebuild: 1 forces"),
    ("force_rebuild 0", "force_rebuild", False, "0 is the default"),
    ("force_no_rebuild 1", "force_no_rebuild", True, "1 skips the rebuild"),
    ("auto_reset_crashkernel no", "auto_reset_crashkernel", False, "_should_reset: != no"),
    ("auto_reset_crashkernel yes", "auto_reset_crashkernel", True, "kdump.conf(5) default"),
    ("auto_reset_crashkernel 0", "auto_reset_crashkernel", True, "'0' is not 'no': resets"),
    ("auto_reset_crashkernel No", "auto_reset_crashkernel", True, "case matters: resets"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "attr", "value", "what"), VALUES, ids=[v[3] for v in VALUES])
def test_directive_values(line: str, attr: str, value: object, what: str) -> None:
    cfg = parse_config(line + "\n", "kdump.conf")
    assert getattr(cfg, attr) == value
    odd = line.split()[1] not in ("yes", "no") and attr == "auto_reset_crashkernel"
    assert any("only 'no' turns it off" in w for w in cfg.warnings) == odd


REFUSED = [
    ("force_rebuild yes", "force_rebuild must be 0 or 1", "'force_rebuild value is invalid'"),
    ("force_no_rebuild 2", "force_no_rebuild must be 0 or 1", "'force_no_rebuild ... invalid'"),
    ("force_rebuild 1\nforce_no_rebuild 1", "can't be enabled at the same time",
     "'enabled simultaneously'"),
    ("ext4 /dev/vdb1\ndracut_args --mount \"/dev/vdc1 /mnt ext4\"",
     "dracut_args --mount conflicts with a target", "'More than one dump targets'"),
    ("dracut_args --mount \"/dev/vdc1 /mnt ext4\"\nxfs /dev/vdb1",
     "dracut_args --mount conflicts with a target", "either order"),
    ("fence_kdump_args -p 0", "-p 0: a number 1-65535", "fence_kdump_send: invalid ipport"),
    ("fence_kdump_args -f ipx", "auto, ipv4 or ipv6", "fence_kdump_send: unsupported family"),
    ("fence_kdump_args -i 0", "-i 0: a number", "fence_kdump_send: invalid interval"),
    ("fence_kdump_args --nodes x", "fence_kdump_send takes", "not a fence_kdump_send option"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message", "what"), REFUSED, ids=[r[2] for r in REFUSED])
def test_refused(text: str, message: str, what: str) -> None:
    with pytest.raises(ConfigError, match="kdump.conf:[0-9]+: .*" + message.replace("(", r"\(")):
        parse_config(text + "\n", "kdump.conf")


def test_fence_args_as_fence_kdump_send() -> None:
    cfg = parse_config("fence_kdump_args -p 7411 -f ipv4 -c 2 -i 1 -v\nfence_kdump_nodes a b\n")
    assert (cfg.fence.port, cfg.fence.family, cfg.fence.count, cfg.fence.interval) == (
        7411, "ipv4", 2, 1,
    )  # fmt: skip
    default = parse_config("fence_kdump_nodes a\n").fence
    assert (default.port, default.family, default.count, default.interval) == (7410, "auto", 0, 10)
    long = parse_config("fence_kdump_args --ipport=7412 --interval=3\n").fence
    assert (long.port, long.interval) == (7412, 3)


@pytest.mark.parametrize("node", ["thishost", "192.0.2.7", "localhost", "127.0.0.1"])
def test_fence_nodes_naming_this_host(node: str) -> None:
    """check_fence_kdump_config: 'Option fence_kdump_nodes cannot contain <node>'."""
    cfg = parse_config(f"fence_kdump_nodes peer1 {node}\n", "kdump.conf")
    with pytest.raises(ConfigError, match=f"fence_kdump_nodes cannot contain {node}"):
        check_fence_nodes(cfg, {"thishost", "192.0.2.7", "localhost", "127.0.0.1", "::1"})
    check_fence_nodes(parse_config("fence_kdump_nodes peer1 peer2\n"), {"thishost"})


def test_fence_nodes_real_host_name() -> None:
    import socket

    cfg = parse_config(f"fence_kdump_nodes {socket.gethostname()}\n", "kdump.conf")
    with pytest.raises(ConfigError, match="cannot contain"):
        check_fence_nodes(cfg)


DRACUT = [
    # (dracut_args value, attribute of cfg.dracut, expected, what it maps to)
    ('--add-drivers "virtio_blk nvme"', "add_drivers", ("virtio_blk", "nvme"),
     "mkdumprd passes it to dracut: modules added"),
    ("--add-drivers=ext2 --force-drivers xfs", "add_drivers", ("ext2", "xfs"), "--opt=value"),
    ('--omit-drivers "cfg80211 snd"', "omit_drivers", ("cfg80211", "snd"),
     "spec/kdump-lib-initramfs_spec.sh:12 shape: modules left out"),
    ("--filesystems vfat -d sd_mod", "add_drivers", ("vfat", "sd_mod"), "filesystems/drivers"),
    ('--install "/usr/bin/lsblk /etc/hostname"', "install", ("/usr/bin/lsblk", "/etc/hostname"),
     "files at host paths, like extra_bins"),
    ("--no-compress", "compression", "none", "uncompressed archive"),
    ("--compress=gzip", "compression", "gzip", "--compress gzip"),
    ("--zstd", "compression", "zstd", "--zstd"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "attr", "expected", "what"), DRACUT, ids=[d[3] for d in DRACUT])
def test_dracut_args_honoured(value: str, attr: str, expected: object, what: str) -> None:
    cfg = parse_config(f"dracut_args {value}\n", "kdump.conf")
    assert getattr(cfg.dracut, attr) == expected
    assert cfg.warnings == ()


@pytest.mark.parametrize(
    "value", ['--omit "plymouth resume"', "-o plymouth", "--quiet", "-H", "--squash-compressor xz"]
)
def test_dracut_args_without_effect_are_warned(value: str) -> None:
    cfg = parse_config(f"dracut_args {value}\n", "kdump.conf")
    assert len(cfg.warnings) == 1 and "no effect on kdumpy's initramfs" in cfg.warnings[0]
    assert cfg.warnings[0].startswith("kdump.conf:1: dracut_args")


DRACUT_REFUSED = [
    ("--add lvm", "no dracut modules", "dracut module add"),
    ("-a 'lvm crypt'", "no dracut modules", "short -a"),
    ('--kernel-cmdline "rd.debug"', "KDUMP_COMMANDLINE_APPEND", "kernel cmdline"),
    ("--no-hostonly", "this machine only", "generic image"),
    ("--xz", "gzip, zstd or no compression", "compression the kernel may not unpack"),
    ("--compress lz4", "gzip, zstd or no compression", "--compress lz4"),
    ("--tmpdir /var/tmp", "no equivalent", "unknown option"),
    ("lvm", "not an option", "bare word"),
    ("--add-drivers", "needs a value", "missing value"),
    ("--add-drivers -oProxyCommand=x", "must not start with '-'", "module name as an option"),
    ("--install etc/x", "absolute path", "relative install"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "message", "what"), DRACUT_REFUSED,
                         ids=[d[2] for d in DRACUT_REFUSED])  # fmt: skip
def test_dracut_args_refused_with_a_reason(value: str, message: str, what: str) -> None:
    with pytest.raises(ConfigError, match="kdump.conf:1: .*" + message):
        parse_config(f"dracut_args {value}\n", "kdump.conf")


MOUNT_REFUSED = [
    ("-oProxyCommand=touch_x /mnt ext4", "must not start with '-'", "finding 10: device option"),
    ("-x:/export /mnt nfs", "must not start with '-'", "finding 10: nfs host as option"),
    ("/dev/vdb1 /mnt ext4 -oremount", "must not start with '-'", "mount options as option"),
    ("/dev/vdb1 /mnt ext4 rw,$(id)", "odd characters", "shell syntax in options"),
    ("/dev/vdb1 /mnt -t", "not a filesystem type", "fstype as option"),
    ("/dev/vdb1 mnt ext4", "not absolute", "relative mount point"),
    ("vdb1 /mnt ext4", "must be /dev/", "bare device name"),
    ("server/export /mnt nfs", "host:/export", "nfs without host:"),
    ("/dev/vdb1 /mnt", '--mount needs "<dev>', "too few parts"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message", "what"), MOUNT_REFUSED,
                         ids=[m[2] for m in MOUNT_REFUSED])  # fmt: skip
def test_dracut_mount_is_validated_like_a_target(spec: str, message: str, what: str) -> None:
    with pytest.raises(ConfigError, match="kdump.conf:1: .*" + message.replace("$", r"\$")):
        parse_config(f'dracut_args --mount "{spec}"\n', "kdump.conf")


ROUND_TRIP = [
    ('dracut_args --mount "UUID=1234-ABCD /mnt vfat defaults"', "vfat via --mount"),
    ('dracut_args --mount "LABEL=dumps /var/crash f2fs rw,noatime"', "f2fs with options"),
    ('dracut_args --mount "nas:/export /mnt nfs vers=3,nolock"', "nfs with options"),
    ('dracut_args --mount "[fd00::1]:/export /mnt nfs4 defaults"', "nfs4 on IPv6"),
    ("ext4 UUID=03138356-5e61-4ab3-b58e-27507ac41937", "ext4 directive"),
    ("nfs nas:/export", "nfs directive"),
    ("ssh kdump@backup.example.com\nsshkey /root/.ssh/other", "ssh"),
    ("raw /dev/vdc", "raw"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "what"), ROUND_TRIP, ids=[r[1] for r in ROUND_TRIP])
def test_capture_copy_parses_back(text: str, what: str) -> None:
    """Finding 7: what `config check` accepts, the capture kernel must accept too: the copy
    written into the initramfs parses to the same target, path and fence settings."""
    cfg = parse_config(
        f"{text}\npath /dumps\nfence_kdump_nodes peer1\nfence_kdump_args -p 7411\n", "k"
    )
    back = parse_config(render_config(cfg), "capture")
    assert back.target == cfg.target
    assert (back.path, back.fence, back.fence_kdump_nodes) == (cfg.path, cfg.fence, ("peer1",))


@pytest.mark.parametrize("fstype", ["vfat", "exfat", "f2fs", "ext4", "xfs"])
def test_default_target_of_any_fs_parses_back(fstype: str) -> None:
    """Finding 7: with no target, the filesystem holding `path` becomes the target, whatever
    its type; the copy used to say "vfat UUID=..." which the capture rejected."""
    cfg = replace(parse_config("path /var/crash\n"), target=Target(fstype, "UUID=5E1F-0A2B"))
    back = parse_config(render_config(cfg), "capture")
    assert back.target == cfg.target


def test_initramfs_applies_dracut_args(lab_kernel_61, tmp_path: Path) -> None:
    """--add-drivers/--omit-drivers/--install/--no-compress reach the archive, read back with
    GNU cpio; the config inside names the vfat target and the fence node."""
    from kdumpy.service.initramfs import BuildOptions, build_initramfs

    if shutil.which("busybox") is None or shutil.which("cpio") is None:
        pytest.skip("busybox-static or cpio not installed")
    config = parse_config(
        'dracut_args --mount "UUID=1234-ABCD /mnt vfat" --add-drivers "virtio_blk"'
        ' --omit-drivers "nls_cp437" --install /etc/hostname --no-compress\n'
        "fence_kdump_nodes peer1\n",
        "verdict.conf",
    )
    out = tmp_path / "initrd.img"
    opts = BuildOptions(release=lab_kernel_61.release, output=out,
                        modules_dir=lab_kernel_61.modules_dir,
                        kernel_config=lab_kernel_61.config_file, hostonly=False)  # fmt: skip
    result = build_initramfs(config, opts, report=lambda line: None)
    assert result.compression == "none" and out.read_bytes()[:6] == b"070701"

    def extract(name: str) -> str:
        proc = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", name],
                              stdin=out.open("rb"), capture_output=True, check=True)  # fmt: skip
        return proc.stdout.decode()

    modules = extract("etc/kdumpy/modules").split()
    assert "virtio_blk" in modules and "vfat" in modules
    assert "nls_cp437" not in modules
    assert extract("etc/hostname") == Path("/etc/hostname").read_text()
    inside = parse_config(extract("etc/kdump.conf"), "capture")
    assert inside.target == Target("vfat", "UUID=1234-ABCD")
    assert inside.fence_kdump_nodes == ("peer1",)
