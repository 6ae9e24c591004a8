"""The lab kernels the VM tests run on: ``KDUMPY_LAB_KERNELS`` (comma-separated lab series),
by default every kernel CI covers.  One definition for tests/conftest.py's ``lab_dump`` and
the tests that make their own dumps (crash ``irq``)."""

from __future__ import annotations

import os

LAB_KERNELS = tuple(os.environ.get("KDUMPY_LAB_KERNELS", "5.10,6.1,6.12,7").split(","))
