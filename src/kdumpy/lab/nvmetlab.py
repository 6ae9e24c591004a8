"""An NVMe-over-TCP target for the lab: the kernel's nvmet in a second Debian guest.

The build host's kernel has no nvmet (and no configfs), the lab guest's has ``nvmet`` and
``nvmet-tcp``.  :class:`NvmetTarget` boots the lab guest with one extra disk and a job that
exports it through nvmet's configfs (one subsystem, namespace 1, a tcp port on 4420, only
the given host NQN allowed), behind QEMU's user network with a host forward from
``127.0.0.1:PORT``.  A kdump guest on its own user network reaches it at
``10.0.2.2:PORT`` (QEMU's address for the host), in its first and its capture kernel alike.

The target says it is ready on its console; when the test is done, a connection to a
second forwarded port tells the job to take the port down and power off, so everything
nvmet wrote is in the disk image the host then reads.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.lab.debian_job import Job, JobResult, run_job
from kdumpy.lab.kernels import LabKernel
from kdumpy.lab.qemu import Disk
from kdumpy.lab.servers import spare_port

NQN = "nqn.2026-12.org.kdumpy:nvme-lab"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:5b1c8a5e-6f5c-4d7e-9c51-2a3f0e9d1b77"
HOSTID = "5b1c8a5e-6f5c-4d7e-9c51-2a3f0e9d1b77"
READY = "KDUMPY-NVMET-READY"
STOP_PORT = 5555  # in the target guest: a connection there ends the job
# vda is the root, vdb the job disk, vdc the exported one.
TARGET_JOB = """set -e
modprobe nvmet-tcp
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
C=/sys/kernel/config/nvmet
S=$C/subsystems/{nqn}
mkdir $S
echo 0 > $S/attr_allow_any_host
mkdir $C/hosts/{hostnqn}
ln -s $C/hosts/{hostnqn} $S/allowed_hosts/
mkdir $S/namespaces/1
printf %s /dev/vdc > $S/namespaces/1/device_path
echo 1 > $S/namespaces/1/enable
mkdir $C/ports/1
echo tcp > $C/ports/1/addr_trtype
echo ipv4 > $C/ports/1/addr_adrfam
echo 0.0.0.0 > $C/ports/1/addr_traddr
echo 4420 > $C/ports/1/addr_trsvcid
ln -s $S $C/ports/1/subsystems/
echo {ready}
python3 -c 'import socket; s = socket.create_server(("", {stop})); s.accept()'
rm $C/ports/1/subsystems/{nqn}
echo 0 > $S/namespaces/1/enable
sync
echo KDUMPY-NVMET-STOPPED
"""


class NvmetTarget:
    """The target guest, exporting *disk* (a raw image) as namespace 1 of :data:`NQN`."""

    def __init__(self, workdir: Path, disk: Path, kernel: LabKernel | str = "6.1",
                 timeout: float = 1800) -> None:  # fmt: skip
        self.workdir, self.disk, self.kernel, self.timeout = workdir, disk, kernel, timeout
        self.port, self.stop_port = spare_port(), spare_port()
        self.result: JobResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        netdev = (f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:4420,"
                  f"hostfwd=tcp:127.0.0.1:{self.stop_port}-:{STOP_PORT}")  # fmt: skip
        script = TARGET_JOB.format(nqn=NQN, hostnqn=HOSTNQN, ready=READY, stop=STOP_PORT)
        job = Job(script, disks=[Disk(self.disk)], network=False, timeout=self.timeout,
                  extra_args=["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"],
                  markers=("KDUMPY-JOB-BEGIN", READY, "KDUMPY-NVMET-STOPPED"))  # fmt: skip
        try:
            self.result = run_job(job, self.workdir, self.kernel)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self.error = exc

    def serial(self) -> str:
        try:
            return (self.workdir / "serial.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, ready_within: float = 900) -> NvmetTarget:
        """Boot the target and wait for its port (its console's ready line)."""
        self._thread.start()
        deadline = time.monotonic() + ready_within
        while "\n" + READY not in self.serial():
            if not self._thread.is_alive() or time.monotonic() > deadline:
                tail = self.serial()[-2000:]
                raise KdumpyError(f"nvmet target guest not ready ({self.error}): {tail}")
            time.sleep(1)
        return self

    def stop(self, within: float = 300) -> JobResult:
        """Tell the job to take the port down and power off; its run."""
        if self._thread.is_alive():
            try:
                with socket.create_connection(("127.0.0.1", self.stop_port), timeout=30):
                    pass
            except OSError:
                pass  # the guest is gone already: the join below says how it ended
            self._thread.join(within)
        if self.result is None:
            raise KdumpyError(f"nvmet target guest did not end cleanly ({self.error}): "
                              f"{self.serial()[-2000:]}")  # fmt: skip
        return self.result

    def __enter__(self) -> NvmetTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
