"""Stored times: ``ts`` writes the same text releases before it wrote with ``strftime`` (rows and index keys
written then must still compare and sort with those written now), and ``from_ts`` reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from pushpool.control_plane.clock import utc
from pushpool.control_plane.storage.records import from_ts, ts

EARLIER_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-1439, 1439))


@settings(max_examples=500)
@given(st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), offsets)))
def test_times_are_stored_as_earlier_releases_stored_them_and_read_back(value):
    assert ts(value) == utc(value).strftime(EARLIER_FORMAT)
    if utc(value).year >= 1000:  # (strftime's text for earlier years never read back: unchanged)
        assert from_ts(ts(value)) == utc(value)


def test_the_text_sorts_like_the_times_and_nothing_stays_nothing():
    times = [datetime(2026, 12, 7, 19, 41, 41, 917256, tzinfo=UTC), datetime(2026, 12, 7, 19, 41, 42, tzinfo=UTC),
             datetime(2026, 12, 7, 21, 0, tzinfo=timezone(timedelta(hours=2)))]
    assert ts(times[0]) == "2026-12-07T19:41:41.917256Z" and ts(times[1]) == "2026-12-07T19:41:42.000000Z"
    assert sorted(times, key=ts) == sorted(times)
    assert ts(None) is None and from_ts(None) is None
