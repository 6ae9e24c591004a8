"""An ssh server target, reached with the real OpenSSH client.

Options are kdump-utils': key authentication only (``BatchMode=yes``) and
``StrictHostKeyChecking=yes`` against the known_hosts file the capture initramfs carries:
a server whose key is not the recorded one is refused, never trusted on first use
(:mod:`kdumpy.service.sshopts`: the first kernel's checks use the same options).  Every
remote command takes its paths after ``--`` and shell-quoted: a ``path`` starting with
``-`` is a directory name, not an option.
The dump travels flattened (``-F``) into ``vmcore-incomplete`` and is renamed
``vmcore.flat``.  An unreachable server is retried a bounded number of times.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import subprocess
import threading
import time

from kdumpy.capture import CaptureError
from kdumpy.capture.collector import collect_to_stream
from kdumpy.capture.layout import VMCORE_FLAT, VMCORE_INCOMPLETE, fresh_names
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.net import wait_for_route
from kdumpy.capture.targets.base import Destination
from kdumpy.service.sshopts import KNOWN_HOSTS, client_options

SSH_TRIES = 5
SSH_DELAY = 3.0
CONNECT_TIMEOUT = 10
# ssh's exit status for its own errors (connection, authentication, host key).
SSH_ERROR = 255


class SshServer(Destination):
    def __init__(
        self,
        log: CaptureLog,
        user: str,
        host: str,
        key: str,
        known_hosts: str = KNOWN_HOSTS,
        ssh_config: str | None = None,
    ) -> None:
        super().__init__(log)
        self.user = user
        self.host = host
        self.key = key
        self.known_hosts = known_hosts
        # A port or other client settings come from ssh's own config files (~/.ssh/config
        # in the initramfs), or from this file when given (-F).
        self.ssh_config = ssh_config
        self.dir = ""
        self.ip = "127.0.0.1"

    def describe(self) -> str:
        return f"ssh {self.user}@{self.host}"

    def ssh_argv(self, remote: str) -> list[str]:
        return [
            "ssh", *client_options(self.key, self.known_hosts, self.ssh_config),
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=15",
            "--", f"{self.user}@{self.host}", remote,
        ]  # fmt: skip

    def prepare(self) -> None:
        self.ip = wait_for_route(self.host)
        # The first command both checks the server (host key, key login) and retries while
        # it is unreachable, like kdumpctl's check_and_wait_network_ready.
        self._remote("true", retries=SSH_TRIES)

    def host_ip(self) -> str:
        return self.ip

    def _remote(self, command: str, data: bytes | None = None, retries: int = 1) -> bytes:
        """Run *command* on the server and return its output; CaptureError on failure
        (a bad host key: at once)."""
        err = ""
        for attempt in range(1, retries + 1):
            proc = subprocess.run(self.ssh_argv(command), input=data or b"", capture_output=True)
            if proc.returncode == 0:
                return proc.stdout
            err = proc.stderr.decode(errors="replace").strip()
            last = err.splitlines()[-1] if err else f"status {proc.returncode}"
            if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION" in err:
                raise CaptureError(
                    f"refusing {self.describe()}: its host key does not match "
                    f"{self.known_hosts} (Host key verification failed)"
                )
            if proc.returncode != SSH_ERROR or "Permission denied" in err:
                raise CaptureError(f"{self.describe()}: {command!r} failed: {last}")
            self.log.warn(f"{self.describe()} not reachable ({attempt}/{retries}): {last}")
            if attempt < retries:
                time.sleep(SSH_DELAY)
        last = err.splitlines()[-1] if err else "no answer"
        raise CaptureError(f"{self.describe()} unreachable after {retries} tries: {last}")

    def make_dump_dir(self, path: str, name: str) -> str:
        # One round trip: mkdir -p the path, then the first name mkdir (without -p) creates.
        names = " ".join(shlex.quote(n) for n in fresh_names(name))
        script = (
            f'd={shlex.quote(path)} && mkdir -p -- "$d" && '
            f'for n in {names}; do err=$(mkdir -m 0700 -- "$d/$n" 2>&1) && '
            '{ echo "$n"; exit 0; }; done; echo "$err" >&2; exit 1'
        )
        created = self._remote(script).decode(errors="replace").strip()
        if created != name:
            self.log.warn(f"{path}/{name} exists on {self.host}: saving to {created}")
        self.dir = posixpath.join(path, created)
        return created

    def _path(self, name: str) -> str:
        return shlex.quote(f"{self.dir}/{name}")

    def write_file(self, name: str, data: bytes) -> None:
        self._remote(f"umask 0077 && cat > {self._path(name)} && sync", data)

    def rename(self, old: str, new: str) -> None:
        self._remote(f"mv -- {self._path(old)} {self._path(new)}")

    def save_dump(self, collector: list[str], vmcore: str) -> str:
        remote = f"umask 0077 && dd bs=512 of={self._path(VMCORE_INCOMPLETE)} 2>/dev/null && sync"
        # ssh reads the dump from a pipe the collector writes (kdumpy collect: in this
        # process, so ssh's messages are read on a thread, not to block it when they fill
        # their pipe).  Only ssh holds the reading end: if it dies, the collector's next
        # write fails (EPIPE) instead of blocking forever.
        read_end, write_end = os.pipe()
        try:
            ssh = subprocess.Popen(self.ssh_argv(remote), stdin=read_end,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        except OSError as exc:
            os.close(write_end)
            raise CaptureError(f"{self.describe()}: ssh: {exc.strerror}") from None
        finally:
            os.close(read_end)
        messages: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(ssh, messages), daemon=True)
        reader.start()
        try:
            collect_to_stream(collector, vmcore, write_end)
        finally:
            os.close(write_end)  # the end of the dump: dd finishes, ssh exits
            ssh.wait()
            reader.join()
        if ssh.returncode != 0:
            err = b"".join(messages).decode(errors="replace").strip().splitlines()
            raise CaptureError(
                f"{self.describe()}: writing {VMCORE_INCOMPLETE} failed: "
                f"{err[-1] if err else ssh.returncode}"
            )
        self.rename(VMCORE_INCOMPLETE, VMCORE_FLAT)
        return VMCORE_FLAT

    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.dir}"


def _read_all(proc: subprocess.Popen[bytes], into: list[bytes]) -> None:
    """ssh's stderr until it closes it (run on a thread beside the collector)."""
    assert proc.stderr is not None
    into.append(proc.stderr.read())
    proc.stderr.close()
