"""Shared fixtures: real dumps of real kernels, made by kdumpy.lab on first use and cached.

Tiers: "fast" (no VM: `pytest -m "not vm"`), "vm" (real kernels in QEMU: CI runs these too) and
"full" (the rest of the matrix: only with `--full` or KDUMPY_FULL=1; `--resume` skips what
passed in an earlier full run of the same tree).  Every run ends with the time per tier and the
ten slowest tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from lab_kernels import LAB_KERNELS
from schedule import LongestFileFirst

from kdumpy.lab.debian_job import boot_retries_log

# Foundation first: a run that is cut short has still proved the layers everything rests on.
AREA_ORDER = ("lab", "vmcore", "collect", "analysis", "service", "capture", "e2e", "early")

# Safety net, not a plan: with KDUMPY_TEST_BUDGET_MIN set, VM tests that would start after that
# many minutes are skipped, and the run then FAILS with a summary naming each of them (a test the
# guard skips is coverage we do not have).  CI's suite is sized to finish well inside it.
BUDGET_SECONDS = float(os.environ.get("KDUMPY_TEST_BUDGET_MIN", "0")) * 60
START = time.monotonic()
START_WALL = time.time()
GUARD_SKIPPED: list[str] = []

TIER_SECONDS: dict[str, float] = defaultdict(float)
TEST_SECONDS: dict[str, float] = defaultdict(float)
PROGRESS_FILE = (
    Path(os.environ.get("KDUMPY_LAB_CACHE", Path.home() / ".cache" / "kdumpy" / "lab"))
    / "vm-tests-passed.txt"
)
TEST_SECONDS_FILE = PROGRESS_FILE.parent / "test-seconds.json"
# The slow tests' seconds from a run on a 2-core machine (scripts/ship-test-seconds.py).
SHIPPED_SECONDS_FILE = Path(__file__).parent / "test-seconds.json"
# A VM test's guest disks, overlays and dumps take a few GiB while it runs.
MIN_FREE_FOR_VM = 6 << 30
LOWEST_FREE = [1 << 62]  # the least free space seen as a VM test ended (the controller)
RAN: set[str] = set()  # tests whose call phase ran (not skipped): their time is worth keeping
SOURCE_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kdumpy")
    group.addoption(
        "--full",
        action="store_true",
        default=os.environ.get("KDUMPY_FULL") == "1",
        help="also run the full matrix (tests marked 'full'); KDUMPY_FULL=1 does the same",
    )
    group.addoption(
        "--resume",
        action="store_true",
        help=f"skip tests that passed in an earlier run of the same tree ({PROGRESS_FILE})",
    )


def _tier(item: pytest.Item) -> str:
    if item.get_closest_marker("full"):
        return "full"
    return "vm" if item.get_closest_marker("vm") else "fast"


def _source_key() -> str:
    """What a recorded pass is valid for: the commit, marked when the tree has changes."""
    repo = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.stdout.strip() or "unknown"


def _passed_before(key: str) -> set[str]:
    try:
        lines = PROGRESS_FILE.read_text().splitlines()
    except FileNotFoundError:
        return set()
    return {line.split(" ", 1)[1] for line in lines if line.startswith(key + " ")}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent

    def area(item: pytest.Item) -> int:
        try:
            name = Path(str(item.path)).relative_to(tests_dir).parts[0]
        except ValueError:
            return len(AREA_ORDER)
        return AREA_ORDER.index(name) if name in AREA_ORDER else len(AREA_ORDER)

    items.sort(key=area)  # stable: pytest's own fixture-driven order holds within an area

    config.stash[SOURCE_KEY] = _source_key()
    passed = _passed_before(config.stash[SOURCE_KEY]) if config.getoption("resume") else set()
    if not config.getoption("full"):
        # Not this run's matrix: deselected (counted in pytest's summary line), so what is
        # collected is what runs, and the scheduler's estimates are of real work.
        matrix = [item for item in items if item.get_closest_marker("full")]
        if matrix:
            config.hook.pytest_deselected(items=matrix)
            items[:] = [item for item in items if not item.get_closest_marker("full")]
    for item in items:
        if item.nodeid in passed:
            item.add_marker(pytest.mark.skip(reason="passed in an earlier run (--resume)"))


def pytest_itemcollected(item: pytest.Item) -> None:
    # Anything that needs a lab dump may boot QEMU to make it: that is a VM test.
    if "lab_dump_61" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.vm)


def _free_bytes() -> int:
    """Free bytes on the fullest of the filesystems the tests write to (tmp and the cache)."""
    places = [Path(os.environ.get("TMPDIR", "/tmp")), PROGRESS_FILE.parent]
    return min(shutil.disk_usage(p).free for p in places if p.exists())


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("vm"):
        free = _free_bytes()
        if free < MIN_FREE_FOR_VM:
            # One clear line instead of a guest dying of ENOSPC half way through its cycle.
            pytest.fail(f"only {free / 2**30:.1f} GiB free on disk: not starting a VM test "
                        f"(needs {MIN_FREE_FOR_VM / 2**30:.0f} GiB)", pytrace=False)  # fmt: skip
    if BUDGET_SECONDS and item.get_closest_marker("vm"):
        used = time.monotonic() - START
        if used > BUDGET_SECONDS:
            pytest.skip(
                f"test time budget used up ({used / 60:.0f} min > "
                f"KDUMPY_TEST_BUDGET_MIN={BUDGET_SECONDS / 60:.0f})"
            )


def _is_worker() -> bool:
    """This process is one of pytest-xdist's workers (the controller reports and records)."""
    return bool(os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201
    if config.getoption("dist") != "loadfile":
        return None
    return LongestFileFirst(config, log, recorded=_recorded_seconds())


def _seconds_in(path: Path) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _recorded_seconds() -> dict[str, float]:
    """Each test's seconds: this machine's last run where it has one, else the times shipped
    in the tree (a cold CI machine's only guide to which files are long)."""
    return {**_seconds_in(SHIPPED_SECONDS_FILE), **_seconds_in(TEST_SECONDS_FILE)}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _is_worker():
        return  # the controller gets every report too: it alone counts and records
    tier = "full" if "full" in report.keywords else "vm" if "vm" in report.keywords else "fast"
    TIER_SECONDS[tier] += report.duration
    TEST_SECONDS[report.nodeid] += report.duration
    if report.when == "teardown" and tier != "fast":
        LOWEST_FREE[0] = min(LOWEST_FREE[0], _free_bytes())
    if report.when == "call":
        RAN.add(report.nodeid)
    if report.skipped and "KDUMPY_TEST_BUDGET_MIN" in str(report.longrepr):
        GUARD_SKIPPED.append(report.nodeid)
    # Record passes so an interrupted run can be resumed with --resume.
    if report.when == "call" and report.passed and "vm" in report.keywords:
        PROGRESS_FILE.parent.mkdir(parents=True, exist_ok=True)
        with PROGRESS_FILE.open("a") as f:
            f.write(f"{_source_key()} {report.nodeid}\n")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    write = terminalreporter.write_line
    workers = (
        config.getoption("numprocesses", None) if config.pluginmanager.has_plugin("xdist") else 0
    )
    terminalreporter.section("time per tier")
    for tier in ("fast", "vm", "full"):
        if tier in TIER_SECONDS:
            write(f"{tier:>5}: {TIER_SECONDS[tier] / 60:6.1f} min")
    if workers:
        write(f"(test time summed over {workers} workers)")
    write(f"total: {(time.monotonic() - START) / 60:6.1f} min wall (collection included)")
    if LOWEST_FREE[0] < 1 << 62:
        write(f" disk: {LOWEST_FREE[0] / 2**30:.1f} GiB free at the lowest (after a VM test)")
    terminalreporter.section("ten slowest tests (setup + call + teardown)")
    for nodeid, seconds in sorted(TEST_SECONDS.items(), key=lambda kv: -kv[1])[:10]:
        write(f"{seconds:8.1f} s  {nodeid}")
    retried = _boot_retries_since(START_WALL)
    if retried:
        terminalreporter.section("lab guest boots repeated (died before the job, no kdumpy code)")
        for line in retried:
            write(line)
    if GUARD_SKIPPED:
        terminalreporter.section("TIME GUARD SKIPPED TESTS: coverage we do not have", red=True)
        for nodeid in GUARD_SKIPPED:
            write(f"skipped by KDUMPY_TEST_BUDGET_MIN: {nodeid}", red=True)


def _boot_retries_since(start: float) -> list[str]:
    """The lab's record of guest boots it repeated during this run (kdumpy.lab.debian_job)."""
    try:
        lines = boot_retries_log().read_text(errors="replace").splitlines()
    except OSError:
        return []
    recent = []
    for line in lines:
        stamp, _, rest = line.partition(" ")
        if stamp.isdigit() and int(stamp) >= start:
            recent.append(rest)
    return recent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _is_worker():
        return
    if GUARD_SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _record_seconds()


def _record_seconds() -> None:
    """The seconds of each test that ran, for the next run's longest-first order."""
    if not RAN:
        return
    recorded = _seconds_in(TEST_SECONDS_FILE)
    recorded.update({nodeid: round(TEST_SECONDS[nodeid], 2) for nodeid in RAN})
    TEST_SECONDS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = TEST_SECONDS_FILE.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(recorded, indent=0, sort_keys=True))
    tmp.replace(TEST_SECONDS_FILE)


@pytest.fixture(
    scope="session", params=[pytest.param(k, marks=pytest.mark.vm) for k in LAB_KERNELS]
)
def lab_dump(request: pytest.FixtureRequest):
    """A 1 GiB guest of each lab kernel, crashed by sysrq, with its ELF /proc/vmcore."""
    from kdumpy.lab.dumps import lab_dump as make

    return make(request.param)


@pytest.fixture(scope="session")
def lab_dump_61():
    """The 6.1 lab dump alone, for tests that need one real dump but not every kernel."""
    from kdumpy.lab.dumps import lab_dump as make

    return make("6.1")
