"""``kdumpy early enable|disable|status``: the capture kernel loaded from the system initramfs."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdumpy.cli.service import _common, _paths, _say


def register(sub: argparse._SubParsersAction) -> None:
    early = sub.add_parser("early", help="early kdump: load the capture kernel from the initramfs")
    esub = early.add_subparsers(dest="early_command", metavar="EARLY_COMMAND")
    early.set_defaults(func=lambda args: early.print_help() or 2)

    enable = esub.add_parser(
        "enable", help="put early kdump in the system initramfs, add rd.earlykdump"
    )
    disable = esub.add_parser("disable", help="remove early kdump and rd.earlykdump")
    for p in (enable, disable):
        _common(p)
        p.add_argument(
            "--generator", choices=("initramfs-tools", "dracut"), default=None,
            help="initramfs generator (default: the one installed)",
        )  # fmt: skip
        p.add_argument(
            "--no-bootloader", action="store_true",
            help="do not edit the boot loader's kernel command line",
        )  # fmt: skip
        p.add_argument(
            "--grub-default",
            type=Path,
            default=Path("/etc/default/grub"),
            help="(default %(default)s)",
        )
    enable.set_defaults(func=cmd_enable)
    disable.set_defaults(func=cmd_disable)

    status = esub.add_parser("status", help="are boot-time crashes covered? (exit 0 yes, 3 no)")
    _common(status)
    status.set_defaults(func=cmd_status)


def _options(args: argparse.Namespace):  # -> early.Options (lazy import: fast --help)
    from kdumpy.service.early import Options

    return Options(
        generator=args.generator,
        edit_bootloader=not args.no_bootloader,
        grub_default=args.grub_default,
    )


def cmd_enable(args: argparse.Namespace) -> int:
    from kdumpy.service import early

    return early.enable(_paths(args), _say, _options(args))


def cmd_disable(args: argparse.Namespace) -> int:
    from kdumpy.service import early

    return early.disable(_paths(args), _say, _options(args))


def cmd_status(args: argparse.Namespace) -> int:
    from kdumpy.service import early

    return early.status(_paths(args), _say)
