"""``sys`` DATE in crash's layout, independent of the day the suite runs on."""

from __future__ import annotations

import calendar

import pytest

from kdumpy.analysis.helpers.system import crash_date


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # crash 8.0.2 pads a one-digit day with a space (strftime's %e), as date(1) does.
        ((2026, 12, 3, 8, 37, 6), "Thu Dec  3 08:37:06 UTC 2026"),
        ((2026, 12, 13, 23, 5, 0), "Sun Dec 13 23:05:00 UTC 2026"),
        ((2024, 2, 29, 0, 0, 0), "Thu Feb 29 00:00:00 UTC 2024"),
    ],
)
def test_crash_date_pads_the_day_like_crash(when, expected):
    assert crash_date(calendar.timegm((*when, 0, 0, 0))) == expected
