"""The xdist work order (tests/schedule.py): longest files first, the guest image shared well."""

from schedule import GUEST_TEST, OTHER_TEST, expected_seconds, file_order


def test_recorded_seconds_win_over_the_estimate_by_kind():
    recorded = {"tests/e2e/test_local.py::test_a": 7.5}
    assert expected_seconds("tests/e2e/test_local.py::test_a", recorded) == 7.5
    assert expected_seconds("tests/early/test_guest.py::test_b", recorded) == GUEST_TEST
    assert expected_seconds("tests/vmcore/test_elf.py::test_c", recorded) == OTHER_TEST


def test_longest_first_with_one_guest_file_and_one_other_file_at_the_start():
    costs = {
        "tests/vmcore/test_elf.py": 30.0,
        "tests/e2e/test_local.py": 500.0,
        "tests/early/test_guest.py": 700.0,
        "tests/lab/test_calibrate.py": 200.0,
        "tests/analysis/test_cli.py": 60.0,
    }
    # Two workers start on the costliest guest file and the costliest other file (a cold
    # cache's guest image is built under a lock: a second guest file would wait on it).
    assert file_order(costs) == [
        "tests/early/test_guest.py",
        "tests/lab/test_calibrate.py",
        "tests/e2e/test_local.py",
        "tests/analysis/test_cli.py",
        "tests/vmcore/test_elf.py",
    ]


def test_no_guest_files_is_plain_longest_first():
    costs = {"tests/a.py": 1.0, "tests/b.py": 3.0, "tests/c.py": 2.0}
    assert file_order(costs) == ["tests/b.py", "tests/c.py", "tests/a.py"]
