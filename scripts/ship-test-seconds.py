#!/usr/bin/env python3
"""Copy the slow tests' seconds from this machine's last run (the lab cache's record) into
tests/test-seconds.json, which orders a cold machine's first run (tests/schedule.py).

Run after a whole `./scripts/test.sh` on a 2-core machine; tests under 5 s are left out
(the scheduler's default covers them)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

CACHE = Path(os.environ.get("KDUMPY_LAB_CACHE", Path.home() / ".cache" / "kdumpy" / "lab"))
SHIPPED = Path(__file__).resolve().parent.parent / "tests" / "test-seconds.json"


def main() -> int:
    recorded = json.loads((CACHE / "test-seconds.json").read_text())
    slow = {test: round(seconds) for test, seconds in recorded.items() if seconds >= 5}
    SHIPPED.write_text(json.dumps(dict(sorted(slow.items())), indent=0) + "\n")
    print(f"{SHIPPED}: {len(slow)} tests of 5 s or more", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
