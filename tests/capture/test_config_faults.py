"""Missing or broken kdump.conf in the capture kernel: one line naming the file, then
failure_action's default (reboot), never a traceback and nothing saved."""

from __future__ import annotations

from .helpers import run_capture


def test_missing_config(tmp_path, dump_61):
    run = run_capture(tmp_path / "nope.conf", dump_61.vmcore, "--target-dir", str(tmp_path))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"{tmp_path / 'nope.conf'}: no kdump config file found" in run.stderr
    assert "kdump: would reboot" in run.stderr


def test_broken_config_names_file_and_line(tmp_path, dump_61):
    conf = tmp_path / "kdump.conf"
    conf.write_text("path /var/crash\nfrobnicate yes\n")
    run = run_capture(conf, dump_61.vmcore, "--target-dir", str(tmp_path))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"{conf}:2: invalid kdump config option: frobnicate" in run.stderr
    assert "kdump: would reboot" in run.stderr
    assert list(tmp_path.iterdir()) == [conf]


def test_missing_vmcore_is_a_target_failure(tmp_path):
    conf = tmp_path / "kdump.conf"
    conf.write_text(
        "ext4 /dev/vdb\ncore_collector makedumpfile -l -d 31\nfailure_action poweroff\n"
    )
    target = tmp_path / "t"
    target.mkdir()
    run = run_capture(conf, tmp_path / "no-vmcore", "--target-dir", str(target))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "would poweroff" in run.stderr
    assert "saved vmcore to" not in run.stderr


def test_kdumpy_save_command(tmp_path, dump_61):
    """`kdumpy save` is the same entry point as `python3 -m kdumpy.capture`."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "kdumpy", "save", "--config", str(tmp_path / "none.conf"),
         "--vmcore", str(dump_61.vmcore), "--no-action"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no kdump config file found" in proc.stderr
    assert "Traceback" not in proc.stderr
