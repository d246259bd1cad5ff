"""Schedule occurrences: cron, interval with anchor, and RFC 5545 rrule, timezone-aware.

Everything is computed in the schedule's local wall-clock time and then converted
to UTC, which makes daylight-saving changes behave as people expect:

* cron ``0 9 * * *`` in Europe/London runs at 09:00 local all year (08:00 UTC in
  summer, 09:00 UTC in winter);
* a wall time that does not exist (spring forward) runs at the same offset before
  the change, i.e. one hour later in local time, once;
* a wall time that happens twice (fall back) runs once, at its first occurrence,
  unless the cron's hour field is a wildcard, in which case both hours run;
* an interval that is a whole number of days keeps the local time of day; shorter
  intervals step in absolute time from the anchor. The anchor aligns the grid; it
  is not a start date (times before it are on the grid too).

What a schedule costs to evaluate is bounded, whatever its anchor and frequency: cron and
rrule occurrences are at least ``MIN_SECONDS`` apart (no ``FREQ=SECONDLY``, at most one
second value), an rrule is evaluated from a whole number of its periods before the window
rather than from its anchor, ``COUNT`` is at most ``MAX_COUNT``, and callers run
:func:`occurrences` within a time budget (:mod:`control_plane.services.budget`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, rrule, rrulestr

from pushpool.control_plane.errors import InvalidInput
from pushpool.control_plane.models import TEN_YEARS_SECONDS, Schedule
from pushpool.control_plane.services.budget import within

DEFAULT_ANCHOR = datetime(2020, 1, 1, tzinfo=UTC)
REORDER_WINDOW = timedelta(hours=2)
#: The shortest time between two occurrences of a cron or rrule schedule (interval schedules are plain
#: arithmetic and may be shorter).
MIN_SECONDS = 60
#: The largest ``COUNT`` an rrule may have (a counted rule is walked from its anchor).
MAX_COUNT = 10_000
_SECONDS_FIELD = 5  # croniter's expansion: minute hour day month weekday [second [year]]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"timezone: unknown timezone {name!r} (use an IANA name such as 'Europe/Paris')") from None


#: Default time one schedule's occurrences may take to compute (``PUSHPOOL_SCHEDULE_BUDGET_SECONDS``).
BUDGET_SECONDS = 0.5


def validate_schedule(schedule: Schedule, field: str = "schedule", budget_seconds: float = BUDGET_SECONDS) -> None:
    """Raise :class:`InvalidInput` naming the field unless ``schedule`` is valid and cheap to evaluate."""
    _validate_rule(schedule, field)
    kind = next(k for k in ("cron", "rrule", "interval_seconds") if getattr(schedule, k) is not None)
    now = datetime.now(UTC)
    with within(budget_seconds, f"{field}.{kind}"):
        # The scheduler's own worst case: a few occurrences looked for up to ten years ahead.
        occurrences(schedule, now, now + timedelta(days=3650), 3)


def _validate_rule(schedule: Schedule, field: str) -> None:
    kinds = [k for k in ("cron", "interval_seconds", "rrule") if getattr(schedule, k) is not None]
    if len(kinds) != 1:
        raise InvalidInput(f"{field}: give exactly one of cron, interval_seconds, rrule (got {kinds or 'none'})")
    zone(schedule.timezone)
    if schedule.cron is not None:
        if not croniter.is_valid(schedule.cron):
            raise InvalidInput(f"{field}.cron: {schedule.cron!r} is not a valid cron expression")
        expanded = croniter(schedule.cron, datetime(2020, 1, 1)).expanded
        if len(expanded) > _SECONDS_FIELD and (len(expanded[_SECONDS_FIELD]) != 1 or expanded[_SECONDS_FIELD] == ["*"]):
            raise InvalidInput(f"{field}.cron: {schedule.cron!r} runs more than once a minute; the seconds field "
                               f"may hold one value (occurrences are at least {MIN_SECONDS} s apart)")
    if schedule.interval_seconds is not None and not 1 <= schedule.interval_seconds <= TEN_YEARS_SECONDS:
        raise InvalidInput(f"{field}.interval_seconds: must be between 1 second and 10 years")
    if schedule.rrule is not None:
        try:
            parsed = rrulestr(schedule.rrule, dtstart=datetime(2020, 1, 1))
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(f"{field}.rrule: {schedule.rrule!r} is not a valid RRULE ({exc})") from None
        _check_rrule_cost(parsed, schedule.rrule, f"{field}.rrule")


def _rules_of(parsed: object) -> list[rrule]:
    # An rruleset keeps its rules in ``_rrule`` (dateutil has no public accessor).
    return [parsed] if isinstance(parsed, rrule) else list(getattr(parsed, "_rrule", []))


def _check_rrule_cost(parsed: object, text: str, field: str) -> None:
    """Refuse rules that fire more than once a minute or count more than ``MAX_COUNT`` occurrences.
    dateutil exposes a rule's parts only as ``_freq``, ``_bysecond`` and ``_count``."""
    for rule in _rules_of(parsed):
        if rule._freq == SECONDLY or len(rule._bysecond or ()) > 1:
            raise InvalidInput(f"{field}: {text!r} runs more than once a minute (FREQ=SECONDLY or several "
                               f"BYSECOND values); occurrences must be at least {MIN_SECONDS} s apart")
        if rule._count is not None and rule._count > MAX_COUNT:
            raise InvalidInput(f"{field}: COUNT may be at most {MAX_COUNT} (got {rule._count}); use UNTIL instead")


#: Periods an uncounted rrule may be moved forward by without changing its occurrences.
_PERIODS = {WEEKLY: timedelta(weeks=1), DAILY: timedelta(days=1), HOURLY: timedelta(hours=1),
            MINUTELY: timedelta(minutes=1)}


def _rrule_near(parsed: object, anchor: datetime, start: datetime) -> object:
    """``parsed`` with its dtstart moved to a whole number of periods before ``start``, so evaluating it
    walks a few periods instead of every period since the anchor. The occurrences are the same: the
    parts dateutil takes from dtstart (time of day, weekday, day of month) are kept by whole periods.
    Counted rules and rule sets are left as they are (COUNT is bounded)."""
    if not isinstance(parsed, rrule) or parsed._count is not None or start <= anchor:
        return parsed
    interval = parsed._interval
    if parsed._freq in _PERIODS:
        period = _PERIODS[parsed._freq] * interval
        steps = (start - anchor) // period - 1
        return parsed.replace(dtstart=anchor + period * steps) if steps > 0 else parsed
    if parsed._freq in (MONTHLY, YEARLY) and anchor.day <= 28:
        months = interval * (1 if parsed._freq == MONTHLY else 12)
        elapsed = (start.year - anchor.year) * 12 + start.month - anchor.month
        steps = elapsed // months - 1
        return parsed.replace(dtstart=anchor + relativedelta(months=months * steps)) if steps > 0 else parsed
    return parsed


def _local_to_utc(wall: datetime, tz: ZoneInfo, fold: int = 0) -> datetime:
    return wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def _is_ambiguous(wall: datetime, tz: ZoneInfo) -> bool:
    return _local_to_utc(wall, tz, 0) != _local_to_utc(wall, tz, 1)


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    return _local_to_utc(wall, tz).astimezone(tz).replace(tzinfo=None) == wall


def _from_walls(walls: Iterator[datetime], tz: ZoneInfo, both_folds: bool) -> Iterator[datetime]:
    for wall in walls:
        if not _exists(wall, tz):
            yield _local_to_utc(wall, tz)  # skipped hour: same offset as before the change
        elif _is_ambiguous(wall, tz):
            yield _local_to_utc(wall, tz, 0)
            if both_folds:
                yield _local_to_utc(wall, tz, 1)
        else:
            yield _local_to_utc(wall, tz)


def _cron_walls(expression: str, start_wall: datetime) -> Iterator[datetime]:
    """Wall times matching ``expression`` strictly after ``start_wall``, ascending."""
    it = croniter(expression, start_wall)
    fast = _plain_cron_walls(it.expanded, start_wall) if not it.nth_weekday_of_month else None
    if fast is not None:
        yield from fast
        return
    while True:
        yield it.get_next(datetime)


#: A plain expression that matches no day in this many years matches none at all (e.g. ``0 0 30 2 *``).
_NO_MATCH_DAYS = 400 * 366


def _plain_cron_walls(fields: list[list], start_wall: datetime) -> Iterator[datetime] | None:
    """The same times as croniter for a five-field expression of numbers, ranges, steps and lists
    (croniter parsed it: ``fields`` is its expansion), found day by day instead of field by field:
    about fifty times faster, which matters when a pass writes a day of ``*/5`` runs for a thousand
    deployments. ``None`` (use croniter) for anything else: seconds, ``L``, ``W``, ``#``."""
    if len(fields) != 5 or any(field != ["*"] and not all(isinstance(v, int) for v in field) for field in fields):
        return None
    minute, hour, dom, month, dow = fields
    minutes = range(60) if minute == ["*"] else sorted(minute)
    hours = range(24) if hour == ["*"] else sorted(hour)
    months = None if month == ["*"] else set(month)
    days = None if dom == ["*"] else set(dom)
    weekdays = None if dow == ["*"] else {d % 7 for d in dow}  # cron: 0 and 7 are Sunday

    def matches(day: date) -> bool:
        if months is not None and day.month not in months:
            return False
        day_ok = days is None or day.day in days
        weekday_ok = weekdays is None or (day.weekday() + 1) % 7 in weekdays
        if days is not None and weekdays is not None:
            return day_ok or weekday_ok  # both restricted: either matches (cron's rule, croniter's day_or)
        return day_ok and weekday_ok

    def walls() -> Iterator[datetime]:
        day, misses = start_wall.date(), 0
        while misses < _NO_MATCH_DAYS:
            if matches(day):
                misses = 0
                for h in hours:
                    for m in minutes:
                        wall = datetime(day.year, day.month, day.day, h, m)
                        if wall > start_wall:
                            yield wall
            else:
                misses += 1
            day += timedelta(days=1)

    return walls()


def _interval_times(schedule: Schedule, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    seconds = float(schedule.interval_seconds or 0)
    anchor = schedule.anchor_date or DEFAULT_ANCHOR
    if seconds % 86400 == 0:
        days = int(seconds // 86400)
        anchor_wall = anchor.astimezone(tz).replace(tzinfo=None)
        after_wall = after.astimezone(tz).replace(tzinfo=None)
        steps = (after_wall - anchor_wall).days // days - 1  # may be negative: the anchor only aligns
        wall = anchor_wall + timedelta(days=steps * days)
        while True:
            yield from _from_walls(iter([wall]), tz, both_folds=False)
            wall += timedelta(days=days)
    else:
        # Each time is computed from the anchor (one rounding), so fractional intervals never drift.
        k = math.floor((after - anchor).total_seconds() / seconds) - 1  # may be negative: the anchor only aligns
        while True:
            yield anchor + timedelta(seconds=k * seconds)
            k += 1


def occurrences(schedule: Schedule, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """UTC times strictly after ``after`` and at or before ``until``, at most ``limit``, ascending."""
    tz = zone(schedule.timezone)
    after_wall = after.astimezone(tz).replace(tzinfo=None)
    if schedule.cron is not None:
        hour_field = schedule.cron.split()[1] if len(schedule.cron.split()) >= 5 else "*"
        # Start one hour early so a fall-back repeat is not missed, then filter.
        source = _from_walls(_cron_walls(schedule.cron, after_wall - timedelta(hours=1)), tz,
                             both_folds=hour_field.startswith("*"))
    elif schedule.rrule is not None:
        anchor = (schedule.anchor_date or DEFAULT_ANCHOR).astimezone(tz).replace(tzinfo=None)
        start_wall = after_wall - timedelta(hours=1)
        rule: Any = _rrule_near(rrulestr(schedule.rrule, dtstart=anchor, ignoretz=True), anchor, start_wall)
        source = _from_walls(iter(rule.xafter(start_wall, inc=False)), tz, both_folds=False)
    else:
        source = _interval_times(schedule, after, tz)
    # Fall-back repeats come out up to an hour out of order: keep a small sorted window.
    window: list[datetime] = []
    result: list[datetime] = []
    for when in _until_overflow(source):
        if when > until + REORDER_WINDOW:
            break
        if when > after and when <= until:
            heapq.heappush(window, when)
        while window and window[0] < when - REORDER_WINDOW:
            _take(result, heapq.heappop(window))
        if len(result) >= limit:
            break
    while window and len(result) < limit:
        _take(result, heapq.heappop(window))
    return result[:limit]


def _until_overflow(source: Iterator[datetime]) -> Iterator[datetime]:
    """Times from ``source`` until they leave the representable range (year 9999)."""
    try:
        yield from source
    except (OverflowError, ValueError):
        return


def _take(result: list[datetime], when: datetime) -> None:
    if not result or when > result[-1]:
        result.append(when)


def latest_occurrences(schedule: Schedule, after: datetime, until: datetime, count: int,
                       span: timedelta = timedelta(hours=1)) -> list[datetime]:
    """The last ``count`` occurrences strictly after ``after`` and at or before ``until``, latest first: looked
    for in a window before ``until`` (first ``span`` long) that widens until it holds them or reaches ``after``."""
    span = max(span, timedelta(minutes=1))
    while True:
        low = max(after, until - span)
        times = occurrences(schedule, low, until, 100_000)
        if len(times) >= count or low == after:
            return list(reversed(times[-count:])) if count else []
        span *= 4
