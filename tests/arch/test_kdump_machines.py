"""The architecture layer's kdump facts per machine (kdumpy.arch.<machine>.kdump)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdumpy.arch.kdump import GENERIC, Platform
from kdumpy.arch.kdump_select import KDUMP_MACHINES, kdump_machine

# The kernel's own syscall tables, as the host's linux-libc-dev installs them: x86_64's, and
# the generic table arm64 and riscv64 use.
UNISTD = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
    "riscv64": Path("/usr/include/asm-generic/unistd.h"),
}


def _nr(header: Path, name: str) -> int:
    found = re.search(rf"^#define __NR_{name}\s+(\d+)\s*$", header.read_text(), re.MULTILINE)
    assert found, f"{header} has no __NR_{name}"
    return int(found.group(1))


@pytest.mark.parametrize("machine", sorted(UNISTD))
def test_kexec_syscall_numbers_are_the_kernels(machine: str) -> None:
    header = UNISTD[machine]
    if not header.exists():
        pytest.skip(f"{header} missing (linux-libc-dev)")
    record = kdump_machine(machine)
    assert record.sys_kexec_load == _nr(header, "kexec_load")
    assert record.sys_kexec_file_load == _nr(header, "kexec_file_load")


def test_a_machine_not_listed_gets_kdump_utils_default_template() -> None:
    assert kdump_machine("loongarch64") is GENERIC
    assert GENERIC.crashkernel_table is None and GENERIC.sys_kexec_file_load is None
    assert GENERIC.commandline_append == "irqpoll maxcpus=1 reset_devices cma=0"


def test_every_record_is_under_its_own_name() -> None:
    assert all(name == record.machine for name, record in KDUMP_MACHINES.items())
    assert {n for n, r in KDUMP_MACHINES.items() if r.fadump} == {"ppc64le"}


def test_arm64_additions_follow_page_size_smmu_and_mlx5() -> None:
    arm64 = kdump_machine("aarch64")
    assert arm64.crashkernel_extra_mib(Platform("aarch64", "6.1.0-arm64")) == 0
    assert arm64.crashkernel_extra_mib(Platform("aarch64", "6.1.0", mlx5=True)) == 150
    big = Platform("aarch64", "6.12.0-64k", mlx5=True, arm_smmu=True)
    assert arm64.crashkernel_extra_mib(big) == 100 + 384 + 200


def test_the_kdump_records_need_only_the_standard_library() -> None:
    """Early kdump and the service import them: no numpy, nothing beyond the stdlib."""
    probe = (
        "import json, sys; import kdumpy.arch.kdump_select; "
        "print(json.dumps([m for m in sys.modules "
        "if m.split('.')[0] not in (*sys.stdlib_module_names, '__main__')]))"
    )
    env = {"PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    loaded = json.loads(run.stdout)
    assert loaded and all(m.startswith("kdumpy") for m in loaded), loaded
