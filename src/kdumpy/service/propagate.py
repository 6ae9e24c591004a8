"""``kdumpy propagate``: give the ssh dump target our key, like kdumpctl propagate.

Creates the key if missing, checks the server's host key (known_hosts, or the
fingerprint shown for the user to accept), then appends the public key to the
server's authorized_keys unless it already logs in (ssh-copy-id's semantics).
The key travels on stdin, never on a command line.

The server is named as ssh itself resolves it (``ssh -G``: HostName, Port and
HostKeyAlias from ssh_config), so a target on another port is looked up in
known_hosts as ``[host]:port`` and scanned on that port.  The first copy
authenticates however the administrator's ssh can (agent, default keys, or a
password typed at the terminal); the check whether the dump key already works
offers that key only (``IdentitiesOnly``), so another key that logs in cannot
pass for it.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service.config import KdumpConfig
from kdumpy.service.sshopts import KNOWN_HOSTS as SSH_KNOWN_HOSTS
from kdumpy.service.sshopts import client_options, config_file, host_key_options

KNOWN_HOSTS = Path(SSH_KNOWN_HOSTS)
# Runs on the server: append stdin to authorized_keys once, with safe permissions.
_INSTALL = (
    "umask 077 && mkdir -p ~/.ssh && touch ~/.ssh/authorized_keys && "
    'key=$(cat) && { grep -qxF "$key" ~/.ssh/authorized_keys || '
    'printf "%s\\n" "$key" >> ~/.ssh/authorized_keys; }'
)
_MISMATCH = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")


@dataclass(frozen=True)
class SshServer:
    """Where ssh really connects for a target: host, port, and its known_hosts name."""

    host: str
    port: int = 22

    @property
    def known_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def resolve(spec: str) -> SshServer:
    """The server *spec* (``user@host``) means after ssh_config (``ssh -G``)."""
    out = _run(["ssh", "-F", config_file(), "-G", "--", spec], "ssh -G")
    opts: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        opts.setdefault(key.lower(), value.strip())
    host = opts.get("hostkeyalias") or opts.get("hostname") or spec.rpartition("@")[2]
    try:
        port = int(opts.get("port", "22"))
    except ValueError:
        port = 22
    return SshServer(host, port)


def ensure_key(path: Path, report: Callable[[str], None]) -> None:
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(path)], "ssh-keygen")
    report(f"Generated new ssh key {path}")


def host_known(host: str, known_hosts: Path = KNOWN_HOSTS) -> bool:
    """Whether *known_hosts* has an entry for *host* (a known_hosts name: host or [host]:port)."""
    if not known_hosts.exists():
        return False
    proc = subprocess.run(
        ["ssh-keygen", "-F", host, "-f", str(known_hosts)], capture_output=True, check=False
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def scan_host_key(server: SshServer) -> tuple[str, str]:
    """The server's host keys (known_hosts lines) and their fingerprints, for confirmation."""
    cmd = ["ssh-keyscan", "-T", "10", "-p", str(server.port), "--", server.host]
    keys = _run(cmd, "ssh-keyscan")
    if not keys.strip():
        raise KdumpyError(f"{server.known_name}: no ssh host key received (is sshd reachable?)")
    proc = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=keys, capture_output=True, text=True, check=False
    )
    return keys, proc.stdout.strip()


def propagate(
    config: KdumpConfig, report: Callable[[str], None], confirm: Callable[[str], bool]
) -> None:
    target = config.target
    if target is None or target.kind != "ssh":
        raise KdumpyError(f"{config.source}: propagate needs an ssh dump target")
    key = Path(config.sshkey)
    ensure_key(key, report)
    server = resolve(target.spec)
    if not host_known(server.known_name):
        keys, fingerprints = scan_host_key(server)
        if not confirm(f"{server.known_name} host key fingerprints:\n{fingerprints}\nTrust it?"):
            raise KdumpyError(f"{server.known_name}: host key not accepted")
        KNOWN_HOSTS.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(KNOWN_HOSTS, "a") as f:
            f.write(keys if keys.endswith("\n") else keys + "\n")
    probe = subprocess.run(
        ["ssh", *client_options(str(key)), "--", target.spec, "true"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode == 0:
        report(f"{key} is already installed on {target.spec}")
        return
    if any(m in probe.stderr for m in _MISMATCH):
        raise KdumpyError(
            f"{server.known_name}: host key does not match {KNOWN_HOSTS}; "
            "not sending the key (check the server, then fix the known_hosts entry)"
        )
    public = Path(str(key) + ".pub").read_text()
    # Logs in however the administrator's ssh can (agent, password), to the same server
    # and with the same host key check as the capture kernel.
    _run(["ssh", *host_key_options(), "--", target.spec, _INSTALL], "ssh", stdin=public)
    report(f"{key} has been added to ~{target.ssh_user}/.ssh/authorized_keys on {target.ssh_host}")


def check_target(
    config: KdumpConfig, report: Callable[[str], None], timeout: float = 180.0
) -> None:
    """At start, as kdumpctl does: log in with the dump key (host key checked) and create
    ``path`` on the server, so that a key or host key problem shows now, not at crash time.
    ssh sees what the capture kernel's ssh will see (:mod:`.sshopts`): root's known_hosts
    and ssh config only, so a server trusted through /etc/ssh fails here, not at crash time.
    Network errors are retried for *timeout* seconds (the network may still be coming up);
    a refused key or host key fails at once."""
    target = config.target
    if target is None or target.kind != "ssh":
        return
    if not Path(config.sshkey).exists():
        raise KdumpyError(f"{config.sshkey}: no such ssh key; run kdumpy propagate")
    cmd = ["ssh", *client_options(config.sshkey), "-o", "ConnectTimeout=10",
           "--", target.spec, f"mkdir -p -- {shlex.quote(config.path)}"]  # fmt: skip
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}"
        last = last.removeprefix(f"{target.spec}: ").rstrip(".")
        if proc.returncode != 255:
            raise KdumpyError(f"{target.spec}: cannot create {config.path}: {last}")
        if "Permission denied" in proc.stderr or any(m in proc.stderr for m in _MISMATCH):
            raise KdumpyError(f"{target.spec}: {last} (key {config.sshkey}); run kdumpy propagate")
        if time.monotonic() >= deadline:
            raise KdumpyError(f"{target.spec}: not reachable after {timeout:.0f} s: {last}")
        if not waited:
            report(f"Waiting for {target.spec} to be reachable ({last})")
            waited = True
        time.sleep(5)


def _run(cmd: list[str], what: str, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KdumpyError(f"{what} not found: install openssh-client") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        raise KdumpyError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout
