"""kdumpy reset-crashkernel and the automatic reset, case by case against kdump-utils'
shellspec tests (rhkdump/kdump-utils v1.0.61, spec/kdumpctl_reset_crashkernel_spec.sh and
spec/kdumpctl_manage_crashkernel_spec.sh, cited as file:line of the case).

grubby is not packaged where these tests run: tests/service/data/grubby stands in for it
(the --info/--update-kernel subset, on Boot Loader Specification entries).  The
kernel-install plugin runs under systemd's real kernel-install, the Debian hook under the
real run-parts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kdumpy.errors import KdumpyError
from kdumpy.service import reset
from kdumpy.service.bootloader import grubby_entries
from kdumpy.service.crashkernel_default import Platform, default_crashkernel
from kdumpy.service.kernel_hooks import install_kernel_hooks

GRUBBY = Path(__file__).parent / "data" / "grubby"
KERNEL1 = "/boot/vmlinuz-5.15.6-100.fc34.x86_64"
KERNEL2 = "/boot/vmlinuz-5.14.14-200.fc34.x86_64"
RUNNING = "5.15.6-100.fc34.x86_64"
CK = "222M"
TOKEN = "e986846f63134c7295458cf36300ba5b"


def _entry(version: str, linux: str, options: str) -> str:
    return f"title Fedora ({version})\nversion {version}\nlinux {linux}\noptions {options}\n"


@pytest.fixture
def bls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """kernel1 at index 0, kernel2 at indexes 1 and 2 (two entries), a rescue entry at 3."""
    d = tmp_path / "entries"
    d.mkdir()
    root = "root=UUID=45fdf703 ro rhgb quiet"
    (d / f"{TOKEN}-5.15.6-100.fc34.x86_64.conf").write_text(_entry(RUNNING, KERNEL1, root))
    (d / f"{TOKEN}-5.14.14-200.fc34.x86_64.conf").write_text(
        _entry("5.14.14-200.fc34.x86_64", KERNEL2, root)
    )
    (d / f"{TOKEN}-5.14.14-200.fc34.x86_64.0~custom.conf").write_text(
        _entry("5.14.14-200.fc34.x86_64", KERNEL2, root)
    )
    (d / f"{TOKEN}-0-rescue.conf").write_text(
        _entry("0-rescue", f"/boot/vmlinuz-0-rescue-{TOKEN}", root)
    )
    monkeypatch.setenv("GRUBBY_BLS_DIR", str(d))
    return d


def _default(release: str, mode: str, arch: str) -> str:
    return default_crashkernel(Platform(arch, release, dump_mode=mode, nr_cpus=16))


def _machine(arch: str = "x86_64", out: list[str] | None = None, **kw) -> reset.Machine:
    lines = out if out is not None else []
    return reset.Machine(
        default_for=lambda rel, mode: _default(rel, mode, arch),
        arch=arch,
        system_gib=16,
        running_release=RUNNING,
        report=lines.append,
        grubby=str(GRUBBY),
        machine_id=TOKEN,
        **kw,
    )


def _ck(selector: str) -> list[str]:
    return [e.param("crashkernel") for e in grubby_entries(selector, str(GRUBBY))]


def _set_all(param: str, value: str | None, selector: str = "ALL") -> None:
    flag = f"--args={param}={value}" if value is not None else f"--remove-args={param}"
    subprocess.run([str(GRUBBY), f"--update-kernel={selector}", flag], check=True)


KDUMP = _default(RUNNING, "kdump", "x86_64")


def test_no_kernel_updates_the_running_one_only(bls: Path) -> None:
    """reset_crashkernel_spec.sh:54-71: the running kernel's entry, others keep theirs."""
    _set_all("crashkernel", CK)
    out: list[str] = []
    assert reset.reset_crashkernel(_machine(out=out)) == 0
    assert f"Updated crashkernel={KDUMP} for kernel={KERNEL1}, grub entry index=0." in out
    assert _ck(KERNEL1) == [KDUMP]
    assert _ck(KERNEL2) == [CK, CK]


def test_kernel_all(bls: Path) -> None:
    """reset_crashkernel_spec.sh:73-90: --kernel=ALL updates every entry."""
    _set_all("crashkernel", CK)
    out: list[str] = []
    reset.reset_crashkernel(_machine(out=out), "ALL")
    assert f"Updated crashkernel={KDUMP} for kernel={KERNEL1}, grub entry index=0." in out
    assert f"Updated crashkernel={KDUMP} for kernel={KERNEL2}, grub entry index=2." in out
    assert set(_ck("ALL")) == {KDUMP}


def test_one_kernel_path(bls: Path) -> None:
    """reset_crashkernel_spec.sh:92-108: --kernel=<path> touches that kernel only."""
    _set_all("crashkernel", CK)
    reset.reset_crashkernel(_machine(), KERNEL1)
    assert (_ck(KERNEL1), _ck(KERNEL2)) == ([KDUMP], [CK, CK])


@pytest.mark.parametrize(("modified", "spec"), [("1", "110-121"), ("2", "123-135")])
def test_one_of_two_entries_modified(bls: Path, modified: str, spec: str) -> None:
    """reset_crashkernel_spec.sh:<spec>: only the modified entry is reported updated."""
    _set_all("crashkernel", KDUMP)
    _set_all("crashkernel", CK, modified)
    out: list[str] = []
    reset.reset_crashkernel(_machine(out=out), KERNEL2)
    updated = [line for line in out if line.startswith("Updated")]
    assert updated == [
        f"Updated crashkernel={KDUMP} for kernel={KERNEL2}, grub entry index={modified}."
    ]
    other = "2" if modified == "1" else "1"
    assert (
        f"No need to update crashkernel value for kernel={KERNEL2}, grub entry index={other}" in out
    )
    assert _ck(KERNEL2) == [KDUMP, KDUMP]


def test_release_accepted_for_kernel(bls: Path) -> None:
    _set_all("crashkernel", CK)
    reset.reset_crashkernel(_machine(), "5.14.14-200.fc34.x86_64")
    assert _ck(KERNEL2) == [KDUMP, KDUMP]


def test_invalid_kernel_and_fadump_off_ppc(bls: Path) -> None:
    with pytest.raises(KdumpyError, match="Invalid --kernel=/boot/nope, please specify a valid"):
        reset.reset_crashkernel(_machine(), "/boot/nope")
    with pytest.raises(KdumpyError, match="Option --fadump only valid on PPC"):
        reset.reset_crashkernel(_machine(), "ALL", "on")


def test_crashkernel_auto_replaced_by_the_explicit_default(bls: Path) -> None:
    """An entry still carrying RHEL 8's crashkernel=auto gets the value itself."""
    _set_all("crashkernel", "auto")
    reset.reset_crashkernel(_machine(), "ALL")
    assert set(_ck("ALL")) == {KDUMP}


PPC_KDUMP = _default(RUNNING, "kdump", "ppc64le")
PPC_FADUMP = _default(RUNNING, "fadump", "ppc64le")


def test_fadump_on_for_all(bls: Path) -> None:
    """reset_crashkernel_spec.sh:168-185: fadump=on set and the fadump default written."""
    _set_all("crashkernel", CK)
    out: list[str] = []
    reset.reset_crashkernel(_machine("ppc64le", out), "ALL", "on")
    assert (
        f"Updated fadump=on and updated crashkernel={PPC_FADUMP} for kernel={KERNEL1}, "
        "grub entry index=0." in out
    )
    assert set(_ck("ALL")) == {PPC_FADUMP}


def test_existing_fadump_entry_gets_fadump_default(bls: Path) -> None:
    """reset_crashkernel_spec.sh:187-204: without --fadump the entry's fadump= decides."""
    _set_all("crashkernel", CK)
    _set_all("fadump", "on", KERNEL1)
    out: list[str] = []
    reset.reset_crashkernel(_machine("ppc64le", out), KERNEL1)
    assert f"Updated crashkernel={PPC_FADUMP} for kernel={KERNEL1}, grub entry index=0." in out
    assert _ck(KERNEL2) == [CK, CK]


def test_fadump_off_removes_it(bls: Path) -> None:
    """reset_crashkernel_spec.sh:244-256."""
    _set_all("crashkernel", PPC_FADUMP, "1")
    _set_all("fadump", "on", "1")
    _set_all("crashkernel", PPC_KDUMP, "2")
    out: list[str] = []
    reset.reset_crashkernel(_machine("ppc64le", out), KERNEL2, "off")
    assert (
        f"Removed fadump and updated crashkernel={PPC_KDUMP} for kernel={KERNEL2}, "
        "grub entry index=1." in out
    )
    assert all(e.param("fadump") == "" for e in grubby_entries(KERNEL2, str(GRUBBY)))


def test_switch_fadump_on_and_nocma(bls: Path) -> None:
    """reset_crashkernel_spec.sh:291-315."""
    _set_all("crashkernel", CK)
    _set_all("fadump", "on")
    out: list[str] = []
    reset.reset_crashkernel(_machine("ppc64le", out), "ALL", "nocma")
    assert (
        f"Updated fadump=nocma and updated crashkernel={PPC_FADUMP} for kernel={KERNEL1}, "
        "grub entry index=0." in out
    )
    out.clear()
    reset.reset_crashkernel(_machine("ppc64le", out), "ALL", "on")
    assert f"Updated fadump=on for kernel={KERNEL1}, grub entry index=0." in out


def test_small_machine_warns_instead_of_asking_for_reboot(bls: Path) -> None:
    """check_mem_requirement: under 2G the default reserves nothing; say so."""
    _set_all("crashkernel", CK)
    out: list[str] = []
    m = _machine(out=out)
    m.system_gib = 1
    reset.reset_crashkernel(m)
    assert any("kdump requires more than 2GB memory" in line for line in out)
    assert "Please reboot the system for the change to take effect." not in out


OLD = "2G-4G:162M,4G-64G:256M,64G-:512M"  # manage_crashkernel_spec.sh:7


def test_after_update_resets_every_entry(bls: Path, monkeypatch) -> None:
    """manage_crashkernel_spec.sh:64-87: entries with another value are reported; all end
    with the default; the message says how to opt out."""
    monkeypatch.setattr(reset, "bootloader_installed", lambda arch: True)
    _set_all("crashkernel", KDUMP)
    _set_all("crashkernel", OLD, KERNEL1)
    out: list[str] = []
    reset.reset_after_update(_machine(out=out))
    assert any(line.startswith(f"For kernel={KERNEL1}, crashkernel={KDUMP} now.") for line in out)
    assert not any(f"For kernel={KERNEL2}," in line for line in out)
    assert any("auto_reset_crashkernel no" in line for line in out)
    assert set(_ck("ALL")) == {KDUMP}


def test_installed_kernel_only(bls: Path, monkeypatch) -> None:
    """manage_crashkernel_spec.sh:89-113: the new kernel gets the default, kernel1 keeps its."""
    monkeypatch.setattr(reset, "bootloader_installed", lambda arch: True)
    _set_all("crashkernel", OLD)
    (bls / f"{TOKEN}-6.0.0-new.conf").write_text(
        _entry("6.0.0-new", "/boot/vmlinuz-6.0.0-new", "ro")
    )
    out: list[str] = []
    reset.reset_for_installed_kernel(_machine(out=out), "6.0.0-new")
    assert any(f"crashkernel={KDUMP}" in line for line in out)
    assert _ck("/boot/vmlinuz-6.0.0-new") == [KDUMP]
    assert _ck(KERNEL1) == [OLD]


def test_no_bootloader_no_change(bls: Path, monkeypatch) -> None:
    """_is_bootloader_installed: nothing to do in an installer or container."""
    monkeypatch.setattr(reset, "bootloader_installed", lambda arch: False)
    _set_all("crashkernel", OLD)
    assert reset.reset_after_update(_machine()) == 0
    assert set(_ck("ALL")) == {OLD}


GRUB = (
    "GRUB_DEFAULT=0\n"
    'GRUB_CMDLINE_LINUX_DEFAULT="quiet crashkernel=384M-:128M"\n'
    'GRUB_CMDLINE_LINUX="ro crashkernel=auto"\n'
)


def test_debian_grub_default(tmp_path: Path) -> None:
    """No grubby: GRUB_CMDLINE_LINUX carries the default, every other crashkernel= goes."""
    grub = tmp_path / "grub"
    grub.write_text(GRUB)
    (tmp_path / "grub.d").mkdir()
    (tmp_path / "grub.d" / "kdump-tools.cfg").write_text(
        'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=512M-:192M"\n'
    )
    out: list[str] = []
    m = _machine(out=out, grub_default=grub, regenerate_grub=False)
    m.grubby = None
    assert reset.reset_crashkernel(m, "6.1.0-amd64") == 0
    text = grub.read_text()
    assert f'GRUB_CMDLINE_LINUX="ro crashkernel={KDUMP}"' in text
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in text
    assert any("--kernel=6.1.0-amd64 updates them all" in line for line in out)
    assert any("kdump-tools.cfg also sets crashkernel=" in line for line in out)
    out.clear()
    reset.reset_crashkernel(m)
    assert out == [f"No need to update crashkernel value in {grub}"]


def test_kernel_install_plugin_under_real_kernel_install(tmp_path: Path) -> None:
    """The plugin written by install-service runs on `kernel-install add` and passes the
    version on; it never fails the installation."""
    if shutil.which("kernel-install") is None:
        pytest.skip("no kernel-install")
    (tmp_path / "usr/lib/kernel/install.d").mkdir(parents=True)
    (tmp_path / "etc/kernel/postinst.d").mkdir(parents=True)
    recorder = tmp_path / "kdumpy"
    recorder.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/called\nexit 3\n')
    recorder.chmod(0o755)
    done = install_kernel_hooks(tmp_path, str(recorder))
    assert len(done) == 2
    plugin = tmp_path / "etc/kernel/install.d/92-kdumpy-crashkernel.install"
    (tmp_path / "boot").mkdir()
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    env = dict(
        os.environ,
        KERNEL_INSTALL_PLUGINS=str(plugin),
        BOOT_ROOT=str(tmp_path / "boot"),
        KERNEL_INSTALL_CONF_ROOT=str(tmp_path / "conf"),
        KERNEL_INSTALL_LAYOUT="other",
    )
    for command in ("add", "remove"):
        args = [command, "6.9.9-test"] + ([str(tmp_path / "vmlinuz")] if command == "add" else [])
        proc = subprocess.run(["kernel-install", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert (
        tmp_path / "called"
    ).read_text() == "_reset-crashkernel-for-installed-kernel 6.9.9-test\n"
    if shutil.which("run-parts"):
        hooks = tmp_path / "etc/kernel/postinst.d"
        proc = subprocess.run(
            ["run-parts", "--arg=6.10.0", "--arg=/boot/vmlinuz-6.10.0", str(hooks)]
        )
        assert proc.returncode == 0
        assert (tmp_path / "called").read_text().splitlines()[-1] == (
            "_reset-crashkernel-for-installed-kernel 6.10.0"
        )
