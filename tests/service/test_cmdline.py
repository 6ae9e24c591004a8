"""The capture command line (kdump-utils' prepare_cmdline) and the sysconfig file."""

from __future__ import annotations

import pytest

from kdumpy.service.cmdline import capture_cmdline, cpu0_apicid, split_cmdline
from kdumpy.service.config import ConfigError
from kdumpy.service.sysconfig import DEFAULT_APPEND, load_sysconfig, parse_sysconfig

BOOT = (
    "BOOT_IMAGE=/vmlinuz-6.1.0 root=UUID=abcd ro quiet crashkernel=256M "
    'hugepages=16 rd.lvm.lv=vg/root panic_on_warn=1 console=ttyS0 dyndbg="file a.c +p"'
)


def test_split_respects_quotes() -> None:
    assert split_cmdline('a=1  b="x y" c') == ["a=1", 'b="x y"', "c"]


def test_capture_cmdline_removes_and_appends() -> None:
    out = capture_cmdline(BOOT, "hugepages quiet", "irqpoll nr_cpus=1 reset_devices", [], 0)
    params = split_cmdline(out)
    for gone in ("root", "crashkernel", "hugepages", "quiet", "rd.lvm.lv", "panic_on_warn"):
        assert not any(p.split("=")[0] == gone for p in params), gone
    assert "BOOT_IMAGE=/vmlinuz-6.1.0" not in params
    assert params[:3] == ["ro", "console=ttyS0", 'dyndbg="file a.c +p"']
    assert params[3:] == ["irqpoll", "nr_cpus=1", "reset_devices", "disable_cpu_apicid=0"]


def test_append_overrides_inherited_value_and_test_id() -> None:
    out = capture_cmdline("nr_cpus=8 console=ttyS0", "", "nr_cpus=1", ["kdump_test_id=1-2"])
    assert split_cmdline(out) == ["console=ttyS0", "nr_cpus=1", "kdump_test_id=1-2"]


def test_cpu0_apicid(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\napicid\t\t: 4\n\nprocessor\t: 1\napicid\t\t: 6\n")
    assert cpu0_apicid(cpuinfo) == 4
    assert cpu0_apicid(tmp_path / "none") is None


def test_sysconfig_values_and_defaults(tmp_path) -> None:
    path = tmp_path / "kdump"
    path.write_text(
        "# comment\n"
        'KDUMP_COMMANDLINE_REMOVE="hugepages quiet"\n'
        "KDUMP_COMMANDLINE_APPEND='irqpoll nr_cpus=1'\n"
        'KDUMP_IMG="vmlinuz"\n'  # a kdumpctl key we accept and ignore
    )
    sc = load_sysconfig(path)
    assert sc.commandline_remove == "hugepages quiet"
    assert sc.commandline_append == "irqpoll nr_cpus=1"
    assert sc.commandline == "" and sc.vmcore_creation_notification
    assert parse_sysconfig("", "x").commandline_append == DEFAULT_APPEND


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("KDUMP_FOO=1\n", "kdump:1: unknown setting KDUMP_FOO"),
        ("\nKDUMP_COMMANDLINE=$(reboot)\n", "kdump:2: shell expansion is not supported"),
        ("echo hi\n", "kdump:1: expected KEY=value"),
        ('KDUMP_COMMANDLINE="open\n', "kdump:1: No closing quotation"),
    ],
)
def test_sysconfig_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sysconfig(text, "kdump")
    assert str(info.value).startswith(message)
