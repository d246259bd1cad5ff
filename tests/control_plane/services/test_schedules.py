"""Schedule occurrences: cron across DST, interval with anchor, rrule, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import Schedule
from pushpool.control_plane.services.schedules import occurrences, validate_schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_cron_keeps_local_time_across_spring_forward():
    schedule = Schedule(cron="0 9 * * *", timezone="Europe/London")
    times = occurrences(schedule, utc(2026, 3, 27), utc(2026, 3, 31), 10)
    # BST starts on 29 March 2026: 09:00 local is 09:00 UTC before and 08:00 UTC after.
    assert times == [utc(2026, 3, 27, 9), utc(2026, 3, 28, 9), utc(2026, 3, 29, 8), utc(2026, 3, 30, 8)]


def test_nonexistent_local_time_runs_once_after_the_gap():
    schedule = Schedule(cron="30 2 * * *", timezone="America/New_York")
    times = occurrences(schedule, utc(2026, 3, 7), utc(2026, 3, 10), 10)
    assert times == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)]


def test_fixed_hour_runs_once_on_fall_back_but_wildcard_hours_run_both():
    fixed = Schedule(cron="30 1 * * *", timezone="America/New_York")
    assert occurrences(fixed, utc(2026, 10, 31, 12), utc(2026, 11, 2), 10) == [utc(2026, 11, 1, 5, 30)]
    every_half_hour = Schedule(cron="*/30 * * * *", timezone="America/New_York")
    times = occurrences(every_half_hour, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8), 20)
    assert times == [utc(2026, 11, 1, 4, 30) + timedelta(minutes=30 * i) for i in range(8)]


def test_interval_is_aligned_to_its_anchor():
    schedule = Schedule(interval_seconds=300, anchor_date=utc(2026, 1, 1, 0, 2))
    assert occurrences(schedule, utc(2026, 6, 1, 12, 0), utc(2026, 6, 1, 12, 20), 10) == [
        utc(2026, 6, 1, 12, 2), utc(2026, 6, 1, 12, 7), utc(2026, 6, 1, 12, 12), utc(2026, 6, 1, 12, 17)]


def test_daily_interval_keeps_wall_clock_time_in_its_timezone():
    schedule = Schedule(interval_seconds=86400, anchor_date=utc(2026, 1, 1, 17), timezone="Europe/Paris")
    times = occurrences(schedule, utc(2026, 3, 28), utc(2026, 3, 31), 10)
    assert [t.hour for t in times] == [17, 16, 16]  # 18:00 Paris: CET then CEST


def test_rrule_in_timezone():
    schedule = Schedule(rrule="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0", timezone="Europe/London")
    times = occurrences(schedule, utc(2026, 3, 23), utc(2026, 4, 2), 10)
    assert times == [utc(2026, 3, 23, 9), utc(2026, 3, 25, 9), utc(2026, 3, 30, 8), utc(2026, 4, 1, 8)]


def test_limit_and_bounds():
    schedule = Schedule(cron="* * * * *")
    times = occurrences(schedule, utc(2026, 1, 1), utc(2026, 1, 2), 5)
    assert len(times) == 5 and times[0] == utc(2026, 1, 1, 0, 1)


@pytest.mark.parametrize("schedule, message", [
    (Schedule(cron="61 * * * *"), "not a valid cron expression"),
    (Schedule(cron="* * * *"), "not a valid cron expression"),
    (Schedule(interval_seconds=0), "between 1 second and 10 years"),
    (Schedule(interval_seconds=1e12), "between 1 second and 10 years"),
    (Schedule(rrule="FREQ=SOMETIMES"), "not a valid RRULE"),
    (Schedule(cron="* * * * *", timezone="Mars/Olympus"), "unknown timezone"),
    (Schedule(), "exactly one of"),
    (Schedule(cron="* * * * *", interval_seconds=5), "exactly one of"),
])
def test_bad_schedules_are_named(schedule, message):
    with pytest.raises(InvalidInput, match=message):
        validate_schedule(schedule)


def test_anchor_aligns_but_does_not_delay():
    """Regression (found by a property test): an anchor in the future produced no runs before it."""
    schedule = Schedule(interval_seconds=3600, anchor_date=utc(2030, 1, 1, 0, 30))
    assert occurrences(schedule, utc(2026, 6, 1, 12), utc(2026, 6, 1, 15), 10) == [
        utc(2026, 6, 1, 12, 30), utc(2026, 6, 1, 13, 30), utc(2026, 6, 1, 14, 30)]
