"""Hooks that reset crashkernel= when a kernel is installed (auto_reset_crashkernel).

kdump-utils ships 92-crashkernel.install, a kernel-install plugin that runs
``kdumpctl _reset-crashkernel-for-installed_kernel <version>`` on ``add``.  kdumpy installs
its twin in /etc/kernel/install.d, and on Debian, whose kernel packages run
/etc/kernel/postinst.d/* instead (before zz-update-grub), a postinst hook.  Both always
exit 0: a kernel installation must never fail because of kdump.
"""

from __future__ import annotations

from pathlib import Path

from kdumpy import fileio
from kdumpy.service.unit import kdumpy_command

INSTALL_PLUGIN = Path("etc/kernel/install.d/92-kdumpy-crashkernel.install")
POSTINST_HOOK = Path("etc/kernel/postinst.d/kdumpy-crashkernel")
COMMAND = "_reset-crashkernel-for-installed-kernel"


def render_install_plugin(kdumpy: str) -> str:
    """kernel-install calls plugins as: add|remove VERSION ENTRY-DIR IMAGE [INITRD...]."""
    return (
        "#!/bin/sh\n"
        "# kdumpy: the default crashkernel= for a newly installed kernel (see kdump.conf\n"
        "# auto_reset_crashkernel); written by `kdumpy install-service`.\n"
        '[ "$1" = add ] || exit 0\n'
        f'{kdumpy} {COMMAND} "$2" || :\n'
        "exit 0\n"
    )


def render_postinst_hook(kdumpy: str) -> str:
    """Debian's /etc/kernel/postinst.d hooks get: VERSION IMAGE."""
    return (
        "#!/bin/sh\n"
        "# kdumpy: the default crashkernel= for a newly installed kernel (see kdump.conf\n"
        "# auto_reset_crashkernel); written by `kdumpy install-service`.\n"
        f'{kdumpy} {COMMAND} "$1" || :\n'
        "exit 0\n"
    )


def install_kernel_hooks(root: Path = Path("/"), kdumpy: str | None = None) -> list[str]:
    """Write the hooks whose directories' owners exist here; return what was done."""
    command = kdumpy or kdumpy_command()
    done = []
    wanted = []
    if (root / "usr/lib/kernel/install.d").is_dir() or (root / "etc/kernel/install.d").is_dir():
        wanted.append((root / INSTALL_PLUGIN, render_install_plugin(command)))
    if (root / "etc/kernel/postinst.d").is_dir():
        wanted.append((root / POSTINST_HOOK, render_postinst_hook(command)))
    for path, text in wanted:
        path.parent.mkdir(parents=True, exist_ok=True)
        fileio.replace(path, text.encode(), 0o755)
        done.append(f"wrote {path}")
    if not wanted:
        done.append("no kernel-install or /etc/kernel/postinst.d: crashkernel= is not reset "
                    "automatically when a kernel is installed")  # fmt: skip
    return done
