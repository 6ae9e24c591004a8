"""Name and route lookups as the capture initramfs runs them: without the idna codec
(encodings.idna is not shipped), found in a real NFS capture in the Debian guest."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
sys.modules["encodings.idna"] = None  # as in the capture initramfs: not importable
from kdumpy.capture.net import resolve, source_address
print(resolve("10.0.2.2"), resolve("[::1]"), resolve("localhost"), source_address("localhost"))
"""


def test_lookups_without_idna():
    import os
    from pathlib import Path

    import kdumpy

    src = str(Path(kdumpy.__file__).parent.parent)  # -S: no site, so no .pth for kdumpy
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": src})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["10.0.2.2", "::1", "127.0.0.1", "127.0.0.1"]


def test_unresolvable_host_is_a_capture_error():
    from kdumpy.capture import CaptureError
    from kdumpy.capture.net import resolve

    try:
        resolve("no-such-host.invalid")
    except CaptureError as exc:
        assert "cannot resolve dump target host no-such-host.invalid" in str(exc)
    else:
        raise AssertionError("resolved an .invalid name")
