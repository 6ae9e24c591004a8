"""``kdumpy propagate``: give the ssh dump target our key, like kdumpctl propagate.

Creates the key if missing, checks the server's host key (known_hosts, or the
fingerprint shown for the user to accept), then appends the public key to the
server's authorized_keys unless it already logs in (ssh-copy-id's semantics).
The key travels on stdin, never on a command line.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from kdumpy.errors import KdumpyError
from kdumpy.service.config import KdumpConfig

KNOWN_HOSTS = Path("/root/.ssh/known_hosts")
# Runs on the server: append stdin to authorized_keys once, with safe permissions.
_INSTALL = (
    "umask 077 && mkdir -p ~/.ssh && touch ~/.ssh/authorized_keys && "
    'key=$(cat) && { grep -qxF "$key" ~/.ssh/authorized_keys || '
    'printf "%s\\n" "$key" >> ~/.ssh/authorized_keys; }'
)


def ensure_key(path: Path, report: Callable[[str], None]) -> None:
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(path)], "ssh-keygen")
    report(f"Generated new ssh key {path}")


def host_known(host: str, known_hosts: Path = KNOWN_HOSTS) -> bool:
    proc = subprocess.run(
        ["ssh-keygen", "-F", host, "-f", str(known_hosts)], capture_output=True, check=False
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def scan_host_key(host: str) -> tuple[str, str]:
    """The server's host keys (known_hosts lines) and their fingerprints, for confirmation."""
    keys = _run(["ssh-keyscan", "-T", "10", host], "ssh-keyscan")
    if not keys.strip():
        raise KdumpyError(f"{host}: no ssh host key received (is sshd reachable?)")
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
    if not host_known(target.ssh_host):
        keys, fingerprints = scan_host_key(target.ssh_host)
        if not confirm(f"{target.ssh_host} host key fingerprints:\n{fingerprints}\nTrust it?"):
            raise KdumpyError(f"{target.ssh_host}: host key not accepted")
        KNOWN_HOSTS.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(KNOWN_HOSTS, "a") as f:
            f.write(keys if keys.endswith("\n") else keys + "\n")
    strict = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={KNOWN_HOSTS}"]
    probe = subprocess.run(
        ["ssh", "-i", str(key), "-o", "BatchMode=yes", *strict, target.spec, "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        report(f"{key} is already installed on {target.spec}")
        return
    public = Path(str(key) + ".pub").read_text()
    _run(["ssh", *strict, target.spec, _INSTALL], "ssh", stdin=public)
    report(f"{key} has been added to ~{target.ssh_user}/.ssh/authorized_keys on {target.ssh_host}")


def _run(cmd: list[str], what: str, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KdumpyError(f"{what} not found: install openssh-client") from None
    if proc.returncode != 0:
        raise KdumpyError(f"{what} failed: {proc.stderr.strip()}")
    return proc.stdout
