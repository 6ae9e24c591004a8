"""How kdumpy's ssh client reaches an ssh dump target: the same in both kernels.

The capture initramfs carries root's ``~/.ssh/known_hosts`` and ``~/.ssh/config`` and no
other ssh configuration (no ``/etc/ssh/ssh_known_hosts``, no ``/etc/ssh/ssh_config``).  A
check in the first kernel (``kdumpy start``, ``propagate``, a test's status) that read
more than these could pass for a server the capture kernel then refuses; so every ssh
command kdumpy runs reads exactly these files.  The capture's view is the truth.

Standard library only: the capture side imports it, as it imports :mod:`.config`.
"""

from __future__ import annotations

import os

KNOWN_HOSTS = "/root/.ssh/known_hosts"
SSH_CONFIG = "/root/.ssh/config"


def config_file(ssh_config: str | None = None) -> str:
    """ssh's ``-F`` file: *ssh_config*, else root's ``~/.ssh/config``, else none at all."""
    if ssh_config:
        return ssh_config
    return SSH_CONFIG if os.path.exists(SSH_CONFIG) else os.devnull


def host_key_options(known_hosts: str = KNOWN_HOSTS, ssh_config: str | None = None) -> list[str]:
    """The configuration and host key checking the capture kernel has: never trust on
    first use, and no known_hosts but the one the initramfs carries."""
    return [
        "-F", config_file(ssh_config),
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
    ]  # fmt: skip


def client_options(
    key: str, known_hosts: str = KNOWN_HOSTS, ssh_config: str | None = None
) -> list[str]:
    """:func:`host_key_options` plus login with the dump key alone, never a prompt."""
    return [
        *host_key_options(known_hosts, ssh_config),
        "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
    ]  # fmt: skip
