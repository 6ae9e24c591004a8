"""The capture running ``core_collector kdumpy collect ...`` in its own process (issue 13:
a second Python interpreter was the difference between a network dump fitting in 144M
and the OOM killer).

The capture flow runs here, in the test's process, on a vmcore built in the test
(fakecore), with ``--no-action``'s dry-run actions.  Oracles: makedumpfile writing the
same dump from the same vmcore with the same options (byte for byte), makedumpfile -R
rebuilding the flattened stream that reached a raw device or a real OpenSSH sshd, and
the children the capture started (recorded at subprocess's boundary): no Python
interpreter runs the collector.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from collect_oracle import small_fs
from fakecore import PAGE, FakeMachine, mixed_vmcore

from kdumpy.capture.actions import Actions
from kdumpy.capture.flow import CaptureOptions, CaptureResult, run_capture
from kdumpy.capture.log import CaptureLog
from kdumpy.capture.targets.raw import RawDevice
from kdumpy.capture.targets.ssh import SshServer
from kdumpy.collect import collector as collect_collector
from kdumpy.lab.servers import Sshd

pytestmark = pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="no makedumpfile")

ARGS = ["-l", "-d", "1"]  # lzo, zero pages left out: both writers' choices are exercised


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_vmcore(tmp_path_factory.mktemp("fake") / "vmcore")


def makedumpfile(vmcore: Path, out: Path, *args: str) -> bytes:
    subprocess.run(["makedumpfile", "--message-level", "0", *args, str(vmcore), str(out)],
                   check=True, capture_output=True)  # fmt: skip
    return out.read_bytes()


def rebuilt(flat: bytes, out: Path) -> bytes:
    subprocess.run(["makedumpfile", "-R", str(out)], input=flat, check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every program the capture starts (run() and Popen() both end here)."""
    started: list[list[str]] = []
    real = subprocess.Popen.__init__

    def record(self: subprocess.Popen, args: list[str], *rest: object, **kw: object) -> None:
        started.append([str(a) for a in args])
        real(self, args, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", record)
    return started


def python_collectors(started: list[list[str]]) -> list[list[str]]:
    return [argv for argv in started if argv[0] == sys.executable and "collect" in argv]


def capture(tmp_path: Path, conf_text: str, vmcore: Path, target: Path | None = None,
            **opts: object) -> tuple[CaptureResult, str]:  # fmt: skip
    """The capture flow as ``kdumpy save --no-action --target-dir TARGET`` runs it."""
    conf = tmp_path / "kdump.conf"
    conf.write_text(conf_text)
    console = tmp_path / "console"
    with open(console, "w") as stream:
        log = CaptureLog(stream)
        options = CaptureOptions(
            config=str(conf), vmcore=str(vmcore), mountpoint=str(target or tmp_path),
            require_mount=False, cmdline="", hook_dirs=tmp_path / "hooks",
            stack_failure=str(tmp_path / "no-stack-failure"),
            stack_log=str(tmp_path / "no-stack-log"), record_failure=False, **opts,
        )  # fmt: skip
        result = run_capture(options, log, Actions(log, dry_run=True))
    return result, console.read_text()


def only_dump_dir(root: Path) -> Path:
    (dump_dir,) = list((root / "var" / "crash").iterdir())
    return dump_dir


def test_file_target_in_process(tmp_path, vmcore, children):
    """kdumpy collect writes the dump file from the capture's own process, through
    /proc/self/fd/N of the dump directory: the very file makedumpfile writes."""
    target = tmp_path / "target"
    target.mkdir()
    conf = f"ext4 LABEL=t\npath /var/crash\ncore_collector kdumpy collect {' '.join(ARGS)}\n"
    result, console = capture(tmp_path, conf, vmcore, target)
    assert result.ok, console
    assert "kdump: would reboot" in console  # final_action's default
    dump_dir = only_dump_dir(target)
    assert sorted(p.name for p in dump_dir.iterdir()) == ["kexec-dmesg.log", "vmcore"]
    assert (dump_dir / "vmcore").read_bytes() == makedumpfile(vmcore, tmp_path / "mdf", *ARGS)
    assert not python_collectors(children), children


def test_raw_target_stream_in_process(tmp_path, vmcore, children):
    """The flattened stream written to a raw target rebuilds, with makedumpfile -R, into
    makedumpfile's own file.  The target is a regular file standing for the device
    (kdump.conf wants /dev/..., so RawDevice is driven as the flow drives it)."""
    device = tmp_path / "rawdev"
    device.write_bytes(b"")
    raw = RawDevice(CaptureLog(open(os.devnull, "w")), str(device))  # noqa: SIM115
    raw.prepare()
    assert raw.save_dump(["kdumpy", "collect", "-F", *ARGS], str(vmcore)) == str(device)
    theirs = makedumpfile(vmcore, tmp_path / "mdf", *ARGS)
    assert rebuilt(device.read_bytes(), tmp_path / "rebuilt") == theirs
    assert not python_collectors(children), children


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    try:
        server = Sshd(tmp_path / "sshd").start()
    except Exception as exc:  # noqa: BLE001 - no sshd here: the ssh case cannot run
        pytest.skip(f"no sshd: {exc}")
    yield server
    server.stop()


def ssh_options(tmp_path: Path, sshd: Sshd) -> dict[str, object]:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line("127.0.0.1"))
    config = tmp_path / "ssh_config"
    config.write_text(sshd.client_config("127.0.0.1"))
    return {"ssh_config": str(config), "known_hosts": str(known)}


def test_ssh_target_stream_in_process(tmp_path, vmcore, sshd, children):
    """The flattened dump goes from this process through a pipe into OpenSSH's client
    and a real sshd; what arrives rebuilds into makedumpfile's file."""
    crash = tmp_path / "server"
    crash.mkdir()
    conf = (f"ssh root@127.0.0.1\nsshkey {sshd.client_key}\npath {crash}\n"
            f"core_collector kdumpy collect {' '.join(ARGS)}\n")  # fmt: skip
    result, console = capture(tmp_path, conf, vmcore, **ssh_options(tmp_path, sshd))
    assert result.ok, console
    (dump_dir,) = list(crash.iterdir())
    flat = (dump_dir / "vmcore.flat").read_bytes()
    theirs = makedumpfile(vmcore, tmp_path / "mdf", *ARGS)
    assert rebuilt(flat, tmp_path / "rebuilt") == theirs
    assert not python_collectors(children), children
    assert any(argv[0] == "ssh" for argv in children)


def test_ssh_reader_going_away_fails_the_save(tmp_path, vmcore, sshd, monkeypatch):
    """ssh ends before the dump does (its remote command fails at once): the collector's
    writes fail (EPIPE) instead of blocking, and failure_action runs."""
    crash = tmp_path / "server"
    crash.mkdir()
    conf = (f"ssh root@127.0.0.1\nsshkey {sshd.client_key}\npath {crash}\n"
            "core_collector kdumpy collect -d 0\nfailure_action halt\n")  # fmt: skip
    real_argv = SshServer.ssh_argv

    def argv(self: SshServer, remote: str) -> list[str]:
        return real_argv(self, "exit 3" if remote.startswith("umask 0077 && dd") else remote)

    monkeypatch.setattr(SshServer, "ssh_argv", argv)
    result, console = capture(tmp_path, conf, vmcore, **ssh_options(tmp_path, sshd))
    assert not result.ok
    assert result.error.startswith("core_collector kdumpy collect -F -d 0 failed with status ")
    assert "kdump: would halt" in console


def test_collector_error_is_the_programs_status(tmp_path, vmcore, children):
    """A refused command line ends as it did when the collector was a program: its one
    line on stderr, then the CaptureError naming the status, then failure_action."""
    target = tmp_path / "target"
    target.mkdir()
    for args, status in (("-d 40", 1), ("--no-such-option", 2)):
        conf = (f"ext4 LABEL=t\npath /var/crash\ncore_collector kdumpy collect {args}\n"
                "failure_action poweroff\n")  # fmt: skip
        result, console = capture(tmp_path, conf, vmcore, target)
        assert not result.ok
        assert result.error == f"core_collector kdumpy collect {args} failed with status {status}"
        assert "kdump: would poweroff" in console
    assert not python_collectors(children), children
    # The program itself, as the oracle for those statuses.
    for args, status in ((["-d", "40"], 1), (["--no-such-option"], 2)):
        proc = subprocess.run([sys.executable, "-m", "kdumpy", "collect", *args, str(vmcore),
                               str(tmp_path / "x")], capture_output=True)  # fmt: skip
        assert proc.returncode == status


def test_memory_error_goes_to_failure_action(tmp_path, vmcore, monkeypatch):
    """MemoryError inside the collection does not end the capture: one line, then the
    failure path (here dump_to_rootfs would follow; halt is enough to see it)."""

    def no_memory(*args: object, **kw: object) -> None:
        raise MemoryError

    monkeypatch.setattr(collect_collector, "collect", no_memory)
    target = tmp_path / "target"
    target.mkdir()
    conf = "ext4 LABEL=t\npath /var/crash\ncore_collector kdumpy collect -d 31\n"
    conf += "failure_action halt\n"
    result, console = capture(tmp_path, conf, vmcore, target)
    assert not result.ok
    assert result.error == "core_collector kdumpy collect -d 31 ran out of memory"
    errors = [ln for ln in console.splitlines() if "ran out of memory" in ln]
    assert errors == ["kdump: ERROR: core_collector kdumpy collect -d 31 ran out of memory"]
    assert "Traceback" not in console
    assert "kdump: would halt" in console


def test_collector_bug_goes_to_failure_action(tmp_path, vmcore, monkeypatch):
    def bug(*args: object, **kw: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(collect_collector, "collect", bug)
    target = tmp_path / "target"
    target.mkdir()
    conf = "ext4 LABEL=t\npath /var/crash\ncore_collector kdumpy collect\nfailure_action halt\n"
    result, console = capture(tmp_path, conf, vmcore, target)
    assert not result.ok
    assert result.error == (
        "core_collector kdumpy collect internal error: ZeroDivisionError: division by zero"
    )
    assert "kdump: would halt" in console


def test_full_disk_retries_the_next_level_then_marks_incomplete(tmp_path, children, capfd):
    """``-d 0,1`` on a filesystem too small for level 0: the in-process collector retries
    at level 1 as the program does; with ``-d 0`` alone, vmcore-incomplete stays, marked
    incomplete, and the save fails."""
    machine = FakeMachine(pages=4096)  # 16 MiB: level 0 writes all of it uncompressed
    for pfn in range(1600, 1900):
        machine.put(pfn * PAGE, os.urandom(PAGE))  # 1.2 MiB of data, the rest zero pages
    big = machine.write(tmp_path / "vmcore")
    with small_fs(tmp_path / "small", "6m") as target:
        conf = "ext4 LABEL=t\npath /var/crash\ncore_collector kdumpy collect -d 0,1\n"
        result, console = capture(tmp_path, conf, big, target)
        assert result.ok, console
        saved = (only_dump_dir(target) / "vmcore").read_bytes()
        assert saved == makedumpfile(big, tmp_path / "mdf1", "-d", "1")
        shutil.rmtree(target / "var")
        conf = conf.replace("-d 0,1", "-d 0") + "failure_action halt\n"
        result, console = capture(tmp_path, conf, big, target)
        assert not result.ok
        assert result.error == "core_collector kdumpy collect -d 0 failed with status 1"
        assert "the dump is marked incomplete" in capfd.readouterr().err
        assert "kdump: would halt" in console
        names = {p.name for p in only_dump_dir(target).iterdir()}
        assert "vmcore-incomplete" in names and "vmcore" not in names
    assert not python_collectors(children), children
