"""Real dump servers on the host's loopback for tests: OpenSSH's sshd, nfs-ganesha, and
tgt's iSCSI target.

Each listens on 127.0.0.1 at a spare port; a lab guest reaches it through QEMU's user
network as 10.0.2.2 at the same port.  Everything (keys, config, exported directory)
lives in a directory the caller owns, and :meth:`stop` ends only the process started here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from kdumpy.errors import KdumpyError

SSHD = "/usr/sbin/sshd"
GUEST_HOST_IP = "10.0.2.2"  # the host as QEMU's user network shows it to a guest


def spare_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick for an ephemeral bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise KdumpyError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def wait_log(log: Path, text: str, timeout: float = 20.0) -> None:
    """Until *text* appears in a server's *log* (a port in another namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise KdumpyError(f"{log}: no {text!r} after {timeout:.0f} s")


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """A new passphrase-less key pair at *path* (and *path*.pub)."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "kdumpy-lab", "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path


class Sshd:
    """sshd accepting only the client key it generated, as the user running the test.

    With *home*, the session's home is ``<workdir>/home`` (sshd's ``SetEnv HOME``) and the
    keys it accepts are ``~/.ssh/authorized_keys`` there: what a client changes in "its"
    home on the server (``kdumpy propagate``) lands in the test's directory, never in the
    real home of the user running the test.
    """

    def __init__(
        self, workdir: Path, port: int | None = None, home: bool = False,
        netns: str | None = None, listen: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:  # fmt: skip
        if not os.access(SSHD, os.X_OK):
            raise KdumpyError(f"{SSHD} not found: install openssh-server")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.home = self.dir / "home" if home else None
        if self.home is not None:
            (self.home / ".ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
            self.authorized_keys = self.home / ".ssh" / "authorized_keys"
        else:
            self.authorized_keys = self.dir / "authorized_keys"
        self.port = port or spare_port()
        self.host_key = keygen(self.dir / "ssh_host_ed25519_key")
        self.client_key = keygen(self.dir / "kdump_id_ed25519")
        shutil.copy(f"{self.client_key}.pub", self.authorized_keys)
        self.proc: subprocess.Popen[bytes] | None = None
        # In a lab network namespace (kdumpy.lab.netlab), on that namespace's addresses.
        self.netns, self.listen = netns, listen

    def known_hosts_line(self, host: str) -> str:
        """The known_hosts entry for this server as *host* (``[host]:port`` form)."""
        key = Path(f"{self.host_key}.pub").read_text().split()
        return f"[{host}]:{self.port} {key[0]} {key[1]}\n"

    def client_config(self, host: str) -> str:
        """An ssh_config stanza pointing *host* at this server's port."""
        return f"Host {host}\n    Port {self.port}\n"

    def start(self) -> Sshd:
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            + "".join(f"ListenAddress {a}\n" for a in self.listen)
            + f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            + (f"SetEnv HOME={self.home}\n" if self.home is not None else "")
            + "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nPidFile {self.dir / 'sshd.pid'}\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        log = open(self.dir / "sshd.log", "wb")  # noqa: SIM115 - kept open for the daemon
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*prefix, SSHD, "-D", "-e", "-f", str(config)],
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        if self.netns:
            wait_log(self.dir / "sshd.log", "Server listening on")
        else:
            wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


GANESHA = "ganesha.nfsd"

GANESHA_CONF = """NFS_CORE_PARAM {{
    NFS_Port = {port};
    Bind_Addr = {bind};
    Protocols = 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = {dir}/recovery;
}}
EXPORT {{
    Export_Id = 1;
    Path = {dir}/export;
    Pseudo = /export;
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"""


GANESHA_READY = "NFS SERVER INITIALIZED"  # its log line once it serves


class GaneshaNfs:
    """nfs-ganesha exporting ``<workdir>/export`` as ``/export``, NFSv4 over TCP only.

    NFSv4 needs neither rpcbind nor mountd, so the server is one process on one spare
    port; clients mount ``<host>:/export`` with ``vers=4,port=<port>``.
    """

    def __init__(
        self, workdir: Path, port: int | None = None, netns: str | None = None,
        bind: str = "127.0.0.1",
    ) -> None:  # fmt: skip
        """*port* 2049 lets a guest use kdump.conf's plain ``nfs host:/path`` (NFSv4's
        well-known port, free on hosts whose kernel has no nfsd, and in a namespace of
        its own); default: a spare port.  With *netns* the server runs in that lab
        network namespace (:mod:`kdumpy.lab.netlab`), on its address *bind*."""
        if shutil.which(GANESHA) is None:
            raise KdumpyError(f"{GANESHA} not found: install nfs-ganesha and nfs-ganesha-vfs")
        self.dir = workdir
        self.export = workdir / "export"
        self.export.mkdir(parents=True, exist_ok=True)
        (workdir / "recovery").mkdir(exist_ok=True)
        self.port = port or spare_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.netns, self.bind = netns, bind

    def mount_options(self) -> str:
        return f"vers=4.1,port={self.port}"

    def start(self) -> GaneshaNfs:
        config = self.dir / "ganesha.conf"
        config.write_text(GANESHA_CONF.format(port=self.port, dir=self.dir, bind=self.bind))
        log = self.dir / "ganesha.log"
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, GANESHA, "-F", "-L", str(log), "-f", str(config), "-p",
             str(self.dir / "pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if self.netns:
                wait_log(log, GANESHA_READY)
            else:
                wait_port(self.port)
        except KdumpyError:
            self.stop()
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise KdumpyError(f"nfs-ganesha did not start: {' '.join(tail)}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> GaneshaNfs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


TGTD = "/usr/sbin/tgtd"
TGTADM = "/usr/sbin/tgtadm"


class IscsiTarget:
    """tgt's tgtd serving one LUN (a file) as an iSCSI target on 127.0.0.1 at a spare
    port, with its own management socket (``tgtadm -C PORT``), optionally behind CHAP.

    A guest logs in at 10.0.2.2 on that port.  No SendTargets discovery: it would name
    the portal 127.0.0.1, which is the guest's own loopback; the guest makes its node
    record by hand (``iscsiadm -m node -o new``).
    """

    def __init__(self, workdir: Path, backing: Path, iqn: str = "iqn.2026-12.org.kdumpy:lab",
                 chap: tuple[str, str] | None = None, port: int | None = None) -> None:  # fmt: skip
        if not os.access(TGTD, os.X_OK):
            raise KdumpyError(f"{TGTD} not found: install tgt")
        self.dir, self.backing, self.iqn, self.chap = workdir, backing, iqn, chap
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or spare_port()
        # tgtd's management socket /var/run/tgtd/socket.N (N at most 32767), one per
        # daemon: derived from the spare port, so two tests' daemons do not share it.
        self.control = str(self.port % 32000 + 100)
        self.proc: subprocess.Popen[bytes] | None = None

    def tgtadm(self, *args: str) -> None:
        proc = subprocess.run([TGTADM, "-C", self.control, "--lld", "iscsi", *args],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise KdumpyError(f"tgtadm {' '.join(args[:4])}: {proc.stderr.strip()}")

    def start(self) -> IscsiTarget:
        log = open(self.dir / "tgtd.log", "wb")  # noqa: SIM115 - kept open for the daemon
        self.proc = subprocess.Popen(
            [TGTD, "-f", "-C", self.control, "--iscsi", f"portal=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_port(self.port)
            self.tgtadm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", self.iqn)
            self.tgtadm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
                        "--backing-store", str(self.backing))  # fmt: skip
            self.tgtadm("--mode", "target", "--op", "bind", "--tid", "1",
                        "--initiator-address", "ALL")  # fmt: skip
            if self.chap:
                user, secret = self.chap
                self.tgtadm("--mode", "account", "--op", "new", "--user", user,
                            "--password", secret)  # fmt: skip
                self.tgtadm("--mode", "account", "--op", "bind", "--tid", "1", "--user", user)
        except KdumpyError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """The target goes away at once, as a crashed or unplugged one would (tgtd
        ignores SIGTERM while it serves a target)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            for leftover in (f"socket.{self.control}", f"socket.{self.control}.lock"):
                Path("/var/run/tgtd", leftover).unlink(missing_ok=True)
        self.proc = None

    def __enter__(self) -> IscsiTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
