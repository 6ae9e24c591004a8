"""NVMe over TCP under a dump target: the controller read from a hand-built sysfs (the
layout and attribute formats of the kernel's nvme-core, nvme-fabrics and nvme-tcp: a
fabrics controller under ``virtual/nvme-fabrics/ctl``, a multipath namespace's disk under
its ``nvme-subsystem``), the plan it puts into the capture initramfs, values that could
add options of their own refused, and the capture side's connect through a file standing
in for ``/dev/nvme-fabrics``.

The build host has no nvme-tcp; the real connect runs in the lab, against nvmet in a
second guest (tests/e2e/test_nvme_tcp.py).  Here the options are really written to a
file, and the test then makes the controller and namespace appear in the fake sysfs as
the kernel would.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from kdumpy.capture import CaptureError
from kdumpy.capture import stacks as capture_stacks
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.stacks import StackUp, nvme_options, write_bounded
from kdumpy.errors import KdumpyError
from kdumpy.service import confcheck
from kdumpy.service.config import ConfigError, parse_config
from kdumpy.service.stacks import block, nvme
from kdumpy.service.stacks.install import PLAN_PATH, plan_stack

NQN = "nqn.2026-12.org.kdumpy:nvme-lab"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:5b1c8a5e-6f5c-4d7e-9c51-2a3f0e9d1b77"
HOSTID = "5b1c8a5e-6f5c-4d7e-9c51-2a3f0e9d1b77"
ADDRESS = "traddr=10.0.2.100,trsvcid=4420,src_addr=10.0.2.15"


def _link(sys_root: Path, link: str, target: Path) -> None:
    path = sys_root / link
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))


def _write(directory: Path, attrs: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in attrs.items():
        (directory / name).write_text(value + "\n")


def _controller(sys_root: Path, n: int, **extra: str) -> Path:
    """virtual/nvme-fabrics/ctl/nvmeN with the attributes a tcp controller shows."""
    cdir = sys_root / f"devices/virtual/nvme-fabrics/ctl/nvme{n}"
    attrs = {"transport": "tcp", "address": ADDRESS, "subsysnqn": NQN, "hostnqn": HOSTNQN,
             "hostid": HOSTID, "state": "live", "dhchap_secret": "none", **extra}  # fmt: skip
    _write(cdir, attrs)
    _link(sys_root, f"class/nvme/nvme{n}", cdir)
    return cdir


def _multipath(sys_root: Path, n: int = 0, nsid: int = 1, **extra: str) -> None:
    """Native multipath (Debian's default): the disk nvme{n}n{nsid} under nvme-subsys{n},
    whose directory links the controller; the controller holds the hidden path device
    nvme{n}c{n}n{nsid}; a partition on the disk."""
    cdir = _controller(sys_root, n, **extra)
    nqn = extra.get("subsysnqn", NQN)
    subsys = sys_root / f"devices/virtual/nvme-subsystem/nvme-subsys{n}"
    _write(subsys, {"subsysnqn": nqn, "iopolicy": "numa"})
    _link(sys_root, f"devices/virtual/nvme-subsystem/nvme-subsys{n}/nvme{n}", cdir)
    disk = subsys / f"nvme{n}n{nsid}"
    _write(disk, {"nsid": str(nsid), "wwid": "uuid.0e9c7d2a-1111-4c6f-8b1d-3c2e4f5a6b7c"})
    (disk / "device").symlink_to(f"../../nvme-subsys{n}")
    _write(disk / f"nvme{n}n{nsid}p1", {"partition": "1"})
    _link(sys_root, f"class/block/nvme{n}n{nsid}", disk)
    _link(sys_root, f"class/block/nvme{n}n{nsid}p1", disk / f"nvme{n}n{nsid}p1")
    path = cdir / f"nvme{n}c{n}n{nsid}"
    _write(path, {"nsid": str(nsid)})
    (path / "device").symlink_to(f"../../nvme{n}")
    _link(sys_root, f"class/block/nvme{n}c{n}n{nsid}", path)


def _single(sys_root: Path, n: int, nsid: int = 1, **extra: str) -> None:
    """nvme_core.multipath=N: the disk sits under its controller."""
    cdir = _controller(sys_root, n, **extra)
    disk = cdir / f"nvme{n}n{nsid}"
    _write(disk, {"nsid": str(nsid)})
    (disk / "device").symlink_to(f"../../nvme{n}")
    _link(sys_root, f"class/block/nvme{n}n{nsid}", disk)


def test_multipath_namespace_partition_read_from_sysfs(tmp_path):
    _multipath(tmp_path, tls_key="")  # 6.7's tls_key: on every tcp controller, empty
    (found,) = nvme.controllers(("/dev/nvme0n1p1",), str(tmp_path))
    assert found == nvme.NvmeTcpController(
        disk="/dev/nvme0n1p1", controller="nvme0", subsysnqn=NQN, traddr="10.0.2.100",
        trsvcid=4420, hostnqn=HOSTNQN, hostid=HOSTID, nsid=1,
    )  # fmt: skip
    assert found.describe() == f"NVMe/TCP namespace 1 of {NQN} at 10.0.2.100:4420"


def test_single_path_ipv6_host_traddr_and_hostnqn_from_etc_nvme(tmp_path):
    address = "traddr=fd00::64,trsvcid=4421,host_traddr=fd00::f,src_addr=fd00::f"
    _single(tmp_path, 3, nsid=2, address=address, hostnqn="", hostid="")
    (tmp_path / "hostnqn").write_text(HOSTNQN + "\n")
    (tmp_path / "hostid").write_text(HOSTID.upper() + "\n")
    (found,) = nvme.read_controllers("nvme3n2", str(tmp_path), str(tmp_path / "hostnqn"),
                                     str(tmp_path / "hostid"))  # fmt: skip
    assert (found.traddr, found.trsvcid, found.host_traddr, found.nsid) == \
        ("fd00::64", 4421, "fd00::f", 2)  # fmt: skip
    assert (found.hostnqn, found.hostid) == (HOSTNQN, HOSTID)
    assert found.portal() == "[fd00::64]:4421"


def test_an_address_key_not_carried_stays_out_of_the_plan(tmp_path):
    _multipath(tmp_path, address="traddr=10.0.2.100,trsvcid=4420,nqn=nqn.2014-08.org.evil:x,"
               "host_iface=eth7,src_addr=10.0.2.15")  # fmt: skip
    (found,) = nvme.controllers(("/dev/nvme0n1",), str(tmp_path))
    assert (found.subsysnqn, found.host_traddr) == (NQN, "")
    assert "evil" not in json.dumps(_plan(found)[1]) and "eth7" not in json.dumps(_plan(found)[1])


def test_local_and_non_nvme_disks_are_not_fabrics(tmp_path):
    _single(tmp_path, 0, transport="pcie", address="0000:00:04.0")  # a PCIe drive's address
    virtio = tmp_path / "devices/pci0000:00/0000:00:05.0/virtio2/block/vdb"
    virtio.mkdir(parents=True)
    _link(tmp_path, "class/block/vdb", virtio)
    assert nvme.controllers(("/dev/nvme0n1", "/dev/vdb", "/dev/absent"), str(tmp_path)) == ()


def test_parse_address_is_a_key_value_list():
    assert nvme.parse_address(ADDRESS + "\n", "x") == {
        "traddr": "10.0.2.100", "trsvcid": "4420", "src_addr": "10.0.2.15"}  # fmt: skip
    # A key the plan does not carry is read, not passed on.
    assert nvme.parse_address("traddr=1.2.3.4,nqn=nqn.2014-08.x:y", "x")["nqn"] == \
        "nqn.2014-08.x:y"  # fmt: skip
    for text, message in (("traddr=1.2.3.4,trsvcid", r"'trsvcid' is not key=value"),
                          ("traddr=1.2.3.4,=x", r"entry '=x' is not key=value"),
                          ("traddr=1.2.3.4,traddr=5.6.7.8", r"'traddr' given twice")):  # fmt: skip
        with pytest.raises(KdumpyError, match=message):
            nvme.parse_address(text, "x")


@pytest.mark.parametrize(("extra", "message"), [
    # An NQN or address that would add connect options of its own.
    ({"subsysnqn": NQN + ",hostnqn=nqn.2014-08.org.evil:x"}, r"subsystem NQN .* is not an NVMe"),
    ({"subsysnqn": "nqn.2026-12.org.kdumpy:a=b"}, r"subsystem NQN .* is not an NVMe"),
    ({"hostnqn": "nqn.2014-08.org.nvmexpress:uuid:x\x01y"}, r"host NQN .* is not an NVMe"),
    ({"subsysnqn": "nqn.2026-12.org.kdumpy:" + "x" * 210}, r"subsystem NQN .* is not an NVMe"),
    ({"hostid": "not-a-uuid,nqn=x"}, r"host ID .* is not a UUID"),
    ({"address": "traddr=target.example,trsvcid=4420"}, r"traddr 'target.example' is not an IP"),
    ({"address": "traddr=10.0.2.100,trsvcid=4420x"}, r"trsvcid '4420x' is not a TCP port"),
    ({"address": "trsvcid=4420"}, r"address has no traddr"),
    ({"transport": "rdma"}, r"NVMe over rdma cannot be brought up .*supported: tcp"),
    ({"dhchap_secret": "DHHC-1:00:abcd:"}, r"DH-HMAC-CHAP authentication is not supported"),
    ({"tls_key": "0x2f3a1b0c"}, r"NVMe/TCP over TLS is not supported"),
    # A traddr that smuggles another option: the address list then has it as a key of
    # its own, and the plan carries only the checked ones (the capture writes those).
    ({"address": "traddr=10.0.2.100,nqn=x,trsvcid=4420,trsvcid=1"}, r"'trsvcid' given twice"),
])  # fmt: skip
def test_values_that_could_not_be_passed_on_are_one_line_refusals(tmp_path, extra, message):
    _multipath(tmp_path, **extra)
    with pytest.raises(KdumpyError, match=message) as info:
        nvme.controllers(("/dev/nvme0n1",), str(tmp_path))
    text = str(info.value)
    assert "\n" not in text and "\x01" not in text and "NVMe controller of /dev/nvme0n1" in text


def test_config_check_names_kdump_conf_the_target_and_the_value(monkeypatch, tmp_path):
    """kdumpy config check (and start) refuse the target in one line: the disk's sysfs
    read as block.detect reads it, from this tree."""
    _multipath(tmp_path, subsysnqn=NQN + ",hostnqn=nqn.2014-08.org.evil:x")
    config = parse_config("ext4 UUID=fs-uuid\npath /var/crash\n", "/etc/kdump.conf")
    monkeypatch.setattr(confcheck.targets, "device_node", lambda spec: "/dev/nvme0n1p1")

    def detect(node: str) -> block.Stack:
        return block.Stack(node, disks=(node,), nvme=nvme.controllers((node,), str(tmp_path)))

    monkeypatch.setattr(confcheck.block, "detect", detect)
    with pytest.raises(ConfigError) as err:
        confcheck.check_stack(config, crypttab="")
    message = str(err.value)
    assert message.startswith("/etc/kdump.conf: dump target UUID=fs-uuid: ")
    assert message.endswith(f"subsystem NQN '{NQN},hostnqn=nqn.2014-08.org.evil:x' is not an "
                            "NVMe qualified name") and "\n" not in message  # fmt: skip


# ---- the capture initramfs's share ----


def _plan(*found: nvme.NvmeTcpController) -> tuple:
    stack = block.Stack("/dev/nvme0n1p1", disks=("/dev/nvme0n1p1",), nvme=found)
    files = plan_stack(stack, [], {}, lambda alias: [], tool=lambda name: f"/usr/sbin/{name}")
    return files, json.loads(files.files[PLAN_PATH][0])


def _found(traddr: str = "10.0.2.100", nsid: int = 1, **extra) -> nvme.NvmeTcpController:
    return nvme.NvmeTcpController("/dev/nvme0n1", "nvme0", NQN, traddr, 4420, HOSTNQN,
                                  HOSTID, nsid=nsid, **extra)  # fmt: skip


def test_plan_connects_with_no_tool_and_the_tcp_modules():
    files, plan = _plan(_found())
    assert files.tools == [] and files.modules == ["nvme_tcp"]
    assert plan["layers"] == [{"kind": "nvme-tcp", "subsysnqn": NQN, "hostnqn": HOSTNQN,
                               "hostid": HOSTID, "nsids": [1],
                               "paths": [{"traddr": "10.0.2.100", "trsvcid": 4420}]}]  # fmt: skip
    assert block.Stack("", nvme=(_found(),)).kinds() == {"nvme-tcp"}
    assert block.Stack("", nvme=(_found("fe80::1%eth0"),)).portal() == "fe80::1"


def test_plan_one_step_per_subsystem_with_every_path():
    files, plan = _plan(_found(), _found("10.0.3.100", host_traddr="10.0.3.15"),
                        _found(nsid=2))  # fmt: skip
    (step,) = plan["layers"]
    assert step["nsids"] == [1, 2]
    assert step["paths"] == [{"traddr": "10.0.2.100", "trsvcid": 4420},
                             {"traddr": "10.0.3.100", "trsvcid": 4420,
                              "host_traddr": "10.0.3.15"}]  # fmt: skip


# ---- the capture side ----


def _step(**extra) -> dict:
    path = {"traddr": "10.0.2.100", "trsvcid": 4420}
    return {"kind": "nvme-tcp", "subsysnqn": NQN, "hostnqn": HOSTNQN, "hostid": HOSTID,
            "nsids": [1], "paths": [path], **extra}  # fmt: skip


def _up(tmp_path: Path, fabrics: Path, timeout: float = 5.0) -> tuple[StackUp, io.StringIO]:
    stream = io.StringIO()
    up = StackUp(CaptureLog(stream), timeout, sys_root=str(tmp_path / "sys"), dev_root="/dev",
                 delay=0.01, fabrics=str(fabrics))  # fmt: skip
    return up, stream


class FakeFabrics:
    """The kernel's side of /dev/nvme-fabrics: takes the options string (through the
    real write into a file) and, as the kernel does before the write returns, makes the
    controller appear in the fake sysfs, its namespace with it."""

    def __init__(self, path: Path, sys_root: Path) -> None:
        self.path, self.sys_root, self.got = path, sys_root, []
        path.touch()

    def __call__(self, path: str, text: str, timeout: float) -> str | None:
        reason = write_bounded(path, text, timeout)
        self.got.append(self.path.read_text())
        self.path.write_text("")
        _multipath(self.sys_root)
        return reason


def test_capture_writes_the_options_and_finds_the_namespace(tmp_path):
    fake = FakeFabrics(tmp_path / "nvme-fabrics", tmp_path / "sys")
    up, stream = _up(tmp_path, fake.path)
    up.write_for = fake
    up.bring_up({"layers": [_step()]})
    assert fake.got == [f"transport=tcp,traddr=10.0.2.100,trsvcid=4420,nqn={NQN},"
                        f"hostnqn={HOSTNQN},hostid={HOSTID}"]  # fmt: skip
    assert (f"kdump: NVMe/TCP subsystem {NQN} at 10.0.2.100:4420 connected: namespace 1 "
            "/dev/nvme0n1") in stream.getvalue()  # fmt: skip


def test_capture_options_to_a_plain_file_with_host_traddr(tmp_path):
    """The one write the kernel takes: the file standing in for the device holds it."""
    fabrics = tmp_path / "nvme-fabrics"
    fabrics.touch()
    up, _ = _up(tmp_path, fabrics, timeout=0.2)
    paths = [{"traddr": "fd00::64", "trsvcid": 4421, "host_traddr": "fd00::f"}]
    with pytest.raises(CaptureError, match=r"connected, no disk for namespace 1"):
        up.bring_up({"layers": [_step(paths=paths, hostid="")]})
    text = fabrics.read_text()
    one = f"transport=tcp,traddr=fd00::64,trsvcid=4421,nqn={NQN},hostnqn={HOSTNQN},"
    one += "host_traddr=fd00::f"
    assert text.startswith(one) and set(text.split(one)) == {""}  # written whole, per try


def test_capture_existing_controller_is_not_connected_twice(tmp_path):
    _multipath(tmp_path / "sys")
    up, stream = _up(tmp_path, tmp_path / "absent")  # a write would fail
    up.bring_up({"layers": [_step()]})
    assert "namespace 1 /dev/nvme0n1" in stream.getvalue()
    # A controller without its namespace yet: no second connect, the namespace awaited.
    (tmp_path / "sys/class/block/nvme0n1").unlink()
    up, _ = _up(tmp_path, tmp_path / "absent", timeout=0.1)
    with pytest.raises(CaptureError, match=r": connected, no disk for namespace 1$"):
        up.bring_up({"layers": [_step()]})


def test_capture_target_down_is_a_bounded_failure_with_the_kernels_reason(tmp_path):
    """/dev/full answers every write with ENOSPC, as the fabrics device answers a connect
    to a dead target with its error: the reason is the error, the wait bounded."""
    up, _ = _up(tmp_path, Path("/dev/full"), timeout=0.3)
    start = time.monotonic()
    with pytest.raises(CaptureError) as info:
        up.bring_up({"layers": [_step()]})
    assert time.monotonic() - start < 3
    assert str(info.value) == (f"NVMe/TCP subsystem {NQN}: 10.0.2.100:4420: connect failed: "
                               "No space left on device")  # fmt: skip


def test_capture_write_the_kernel_holds_is_ended_by_the_bound(tmp_path):
    """A FIFO nobody reads blocks the opener as a connect to a silent address blocks the
    writer: the alarm ends it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert write_bounded(str(fifo), "x", 0.5) == "no answer within 0 s"
    assert write_bounded(str(fifo), "x", 1.2) == "no answer within 1 s"
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(("step", "key"), [
    (_step(subsysnqn=NQN + ",hostnqn=nqn.2014-08.org.evil:x"), "nqn"),
    (_step(hostnqn=HOSTNQN + "\nnqn=x"), "hostnqn"),
    (_step(paths=[{"traddr": "10.0.2.100", "trsvcid": 4420, "host_traddr": "a=b"}]),
     "host_traddr"),
])  # fmt: skip
def test_capture_refuses_a_plan_value_that_would_add_options(tmp_path, step, key):
    fabrics = tmp_path / "nvme-fabrics"
    fabrics.touch()
    up, _ = _up(tmp_path, fabrics)
    with pytest.raises(CaptureError, match=rf"NVMe/TCP {key} .* cannot be passed to the kernel"):
        up.bring_up({"layers": [step]})
    assert fabrics.read_text() == ""


def test_nvme_options_order_is_the_kernels_names():
    assert nvme_options(_step(), "10.0.2.100", 4420, "") == (
        f"transport=tcp,traddr=10.0.2.100,trsvcid=4420,nqn={NQN},hostnqn={HOSTNQN},"
        f"hostid={HOSTID}")  # fmt: skip


def test_main_records_the_reason_when_there_is_no_fabrics_device(tmp_path, monkeypatch):
    """The build host has no nvme-fabrics module: /dev/nvme-fabrics is absent, as in a
    capture kernel whose nvme-tcp did not load; the reason is what the capture side runs
    failure_action with and the next boot's `kdumpy status` shows."""
    plan = tmp_path / "stacks.json"
    plan.write_text(json.dumps({"layers": [_step()]}))
    monkeypatch.setenv("KDUMP_DEVICE_TIMEOUT", "0")
    failure = tmp_path / "run/kdumpy/stack-failure"
    assert capture_stacks.main(str(plan), str(failure), str(tmp_path / "stack.log")) == 1
    assert capture_stacks.failure(str(failure)) == (
        f"NVMe/TCP subsystem {NQN}: 10.0.2.100:4420: connect failed: No such file or directory"
    )
