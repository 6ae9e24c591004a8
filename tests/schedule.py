"""The order in which pytest-xdist's workers take test files: the longest first.

`./scripts/test.sh` runs the suite on one worker per core (``-n``, ``--dist loadfile``: a file's
tests stay on one worker, so a module's guest boots once).  xdist hands out files with the most
tests first, which puts the few-but-long e2e and early-kdump files (a guest cycle of minutes
each) last and leaves one worker running them while the other idles.  Longest-first is the
classic fix for that tail; the expected cost of a file is estimated from what its tests are
from the seconds each test took when it last ran on this machine (recorded in the lab cache by
tests/conftest.py) or, on a cold machine, a guest cycle per e2e or early-kdump test.

The first two files handed out are the costliest that boots the Debian guest image and the
costliest that does not: from a cold cache the image takes minutes to build under a lock,
and a second worker waiting on that lock would waste them.
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling

GUEST_TEST = 120.0  # expected seconds of an e2e or early-kdump test: a whole guest cycle
OTHER_TEST = 1.0  # anything else, VM or not: mostly fast tests and reads of a cached lab dump
GUEST_AREAS = ("tests/e2e/", "tests/early/")


def expected_seconds(nodeid: str, recorded: dict[str, float]) -> float:
    """What the test *nodeid* should take: as last time here, or by its kind."""
    if nodeid in recorded:
        return recorded[nodeid]
    return GUEST_TEST if nodeid.startswith(GUEST_AREAS) else OTHER_TEST


def file_order(costs: dict[str, float]) -> list[str]:
    """Files (keys of *costs*, their expected seconds) in the order to hand them out."""
    by_cost = sorted(costs, key=lambda f: -costs[f])
    guest = [f for f in by_cost if f.startswith(GUEST_AREAS)]
    other = [f for f in by_cost if not f.startswith(GUEST_AREAS)]
    first = guest[:1] + other[:1]
    return first + [f for f in by_cost if f not in first]


class LongestFileFirst(LoadFileScheduling):
    """xdist's per-file scheduling, its work queue in :func:`file_order`."""

    def __init__(self, config, log=None, recorded: dict[str, float] | None = None) -> None:  # noqa: ANN001
        super().__init__(config, log)
        self.recorded = recorded or {}
        self.ordered = False

    def _assign_work_unit(self, node) -> None:  # noqa: ANN001 (xdist's WorkerController)
        # The first call comes once the collection is split into files, before any is sent.
        if not self.ordered:
            queue = dict(self.workqueue)
            costs = {
                path: sum(expected_seconds(nodeid, self.recorded) for nodeid in tests)
                for path, tests in queue.items()
            }
            self.workqueue.clear()
            for path in file_order(costs):
                self.workqueue[path] = queue[path]
            self.ordered = True
        super()._assign_work_unit(node)
