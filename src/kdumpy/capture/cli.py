"""``kdumpy save``: registered by kdumpy.cli (module list) through :func:`register`."""

from __future__ import annotations

import argparse
from typing import Any

from kdumpy.capture.main import add_arguments, run


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "save", help="save /proc/vmcore to the kdump.conf target (capture kernel)"
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
