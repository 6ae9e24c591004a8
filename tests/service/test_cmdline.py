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


# spec/kdump-lib_spec.sh:102-115 (kdump-utils v1.0.61), prepare_cmdline's table: the
# command line, KDUMP_COMMANDLINE_REMOVE, KDUMP_COMMANDLINE_APPEND and the result (the
# spec's apicid/watchdog/gpt_auto tail left out: kdumpy adds the first, see below).
PREPARE_CMDLINE = [
    ("#1", "a b c", "", "", "a b c"),
    ("#2", "a b c", "b", "", "a c"),
    ("#3", "a b=x c", "b", "", "a c"),
    ("#4", "a b='x y' c", "b", "", "a c"),
    ("#5", "a b='x y' c", "b=x", "", "a c"),
    ("#6", "a b='x y' c", "b='x y'", "", "a c"),
    ("#7", "a b c", "", "x", "a b c x"),
    ("#8", "a b c", "", "x=1", "a b c x=1"),
    # kdumpctl appends x='1 2' verbatim, which the kernel (double quotes only) would split
    # into x='1 and 2'; kdumpy writes what the shell quoting meant in the kernel's form.
    ("#9", "a b c", "", "x='1 2'", 'a b c x="1 2"'),
    ("#10", "a b c", "a", "x='1 2'", 'b c x="1 2"'),
    ("#11", "a b c", "x", "x='1 2'", 'a b c x="1 2"'),
]


@pytest.mark.parametrize(("case", "cmdline", "remove", "append", "result"), PREPARE_CMDLINE)
def test_prepare_cmdline_spec_table(
    case: str, cmdline: str, remove: str, append: str, result: str
) -> None:
    assert capture_cmdline(cmdline, remove, append) == result


def test_single_quotes_in_sysconfig_file_reach_the_kernel_as_one_parameter(tmp_path) -> None:
    """KDUMP_COMMANDLINE_APPEND="... dyndbg='file a.c +p'" is one parameter, as the shell
    reads the file and kdumpctl's xargs splits the value."""
    sc = parse_sysconfig(
        "KDUMP_COMMANDLINE_APPEND=\"irqpoll dyndbg='file a.c +p'\"\n"
        "KDUMP_COMMANDLINE_REMOVE='quiet \"console\"'\n",
        "kdump",
    )
    assert sc.commandline_append == "irqpoll dyndbg='file a.c +p'"
    out = capture_cmdline("ro quiet console=ttyS0", sc.commandline_remove, sc.commandline_append)
    assert split_cmdline(out) == ["ro", "irqpoll", 'dyndbg="file a.c +p"']


# gen-kdump-sysconfig.sh (v1.0.61): the _common part, then the architecture's.
X86_64_APPEND = (
    "novmcoredd hugetlb_cma=0 kfence.sample_interval=0 initramfs_options=size=90% "
    "irqpoll nr_cpus=1 reset_devices cgroup_disable=memory mce=off numa=off "
    "udev.children-max=2 panic=10 acpi_no_memhotplug transparent_hugepage=never nokaslr "
    "hest_disable cma=0 pcie_ports=compat"
)
X86_64_REMOVE = (
    "hugepages hugepagesz slub_debug quiet log_buf_len swiotlb hugetlb_cma ignition.firstboot cma"
)


def test_template_defaults_as_gen_kdump_sysconfig() -> None:
    from kdumpy.service.sysconfig import template_defaults

    x86 = template_defaults("x86_64")
    assert x86["KDUMP_COMMANDLINE_APPEND"] == X86_64_APPEND
    assert x86["KDUMP_COMMANDLINE_REMOVE"] == X86_64_REMOVE
    assert x86["KEXEC_ARGS"] == "-s"
    assert x86["FADUMP_COMMANDLINE_APPEND"] == ""
    arm = template_defaults("aarch64")
    assert arm["KDUMP_COMMANDLINE_APPEND"].endswith("panic=10 swiotlb=noforce cma=0")
    assert arm["KDUMP_COMMANDLINE_REMOVE"].endswith("ignition.firstboot cma")
    ppc = template_defaults("ppc64le")
    assert "nr_cpus=16" in ppc["KDUMP_COMMANDLINE_APPEND"].split()
    assert ppc["KDUMP_COMMANDLINE_REMOVE"].endswith("ignition.firstboot")  # no cma on ppc
    assert ppc["FADUMP_COMMANDLINE_APPEND"].startswith("nr_cpus=16 numa=off")
    other = template_defaults("riscv64")  # not listed: the "default" column
    assert other["KDUMP_COMMANDLINE_APPEND"].endswith("irqpoll maxcpus=1 reset_devices cma=0")
    assert other["KEXEC_ARGS"] == ""


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ('VMCORE_CREATION_NOTIFICATION=""', "vmcore_creation_notification", False),
        ("VMCORE_CREATION_NOTIFICATION=YES", "vmcore_creation_notification", True),  # ${,,}
        ('KDUMP_BOOTDIR="/boot/efi"', "bootdir", "/boot/efi"),
        ("KDUMP_IMG=vmlinux", "img", "vmlinux"),
        ('FADUMP_COMMANDLINE_APPEND="nr_cpus=4"', "fadump_commandline_append", "nr_cpus=4"),
    ],
)
def test_sysconfig_keys_kdumpctl_reads(line: str, field: str, value: object) -> None:
    assert getattr(parse_sysconfig(line + "\n", "kdump"), field) == value


def test_log_levels_checked() -> None:
    assert parse_sysconfig("KDUMP_STDLOGLVL=4\n", "kdump").source == "kdump"
    with pytest.raises(ConfigError, match="kdump:1: KDUMP_SYSLOGLVL must be a log level 0-4"):
        parse_sysconfig("KDUMP_SYSLOGLVL=debug\n", "kdump")


def test_watchdog_pretimeout(tmp_path) -> None:
    """get_watchdog_drvs + prepare_cmdline: every watchdog device's driver gets
    pretimeout=0, hpwdt also kdumptimeout=0; the spec's stub 'foo' gives foo.pretimeout=0
    (spec/kdump-lib_spec.sh:96-100)."""
    from kdumpy.service.cmdline import watchdog_drivers, watchdog_params

    for name, alias in (("watchdog0", "pci:v0000103Cd00003306"), ("watchdog1", "platform:foo")):
        (tmp_path / name / "device").mkdir(parents=True)
        (tmp_path / name / "device" / "modalias").write_text(alias + "\n")
    table = {"pci:v0000103Cd00003306": ["hpwdt"], "platform:foo": ["foo"]}
    calls = []

    def resolve(alias: str, release: str) -> list[str]:
        calls.append((alias, release))
        return table[alias]

    drivers = watchdog_drivers("6.1.0", tmp_path, resolve)
    assert drivers == ["hpwdt", "foo"]
    assert calls[0] == ("pci:v0000103Cd00003306", "6.1.0")
    assert watchdog_params(drivers) == [
        "hpwdt.pretimeout=0",
        "hpwdt.kdumptimeout=0",
        "foo.pretimeout=0",
    ]
    assert watchdog_drivers("6.1.0", tmp_path / "none", resolve) == []
