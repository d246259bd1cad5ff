"""Schedule objects for ``flow.deploy(schedules=[...])``: Cron, Interval, RRule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class _Schedule:
    timezone: str = "UTC"
    parameters: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    slug: str | None = None

    def _common(self) -> dict[str, Any]:
        out: dict[str, Any] = {"timezone": self.timezone, "parameters": dict(self.parameters), "active": self.active}
        if self.slug:
            out["slug"] = self.slug
        return out


@dataclass(frozen=True)
class Cron(_Schedule):
    """``Cron("0 9 * * 1-5", timezone="Europe/Paris")``."""

    cron: str = ""

    def __init__(self, cron: str, *, timezone: str = "UTC", parameters: dict | None = None, active: bool = True,
                 slug: str | None = None) -> None:
        object.__setattr__(self, "cron", cron)
        super().__init__(timezone, dict(parameters or {}), active, slug)

    def to_api(self) -> dict[str, Any]:
        return {"cron": self.cron, **self._common()}


@dataclass(frozen=True)
class Interval(_Schedule):
    """``Interval(300)`` or ``Interval(timedelta(hours=1), anchor_date=...)``."""

    seconds: float = 0
    anchor_date: datetime | None = None

    def __init__(self, interval: float | timedelta, *, anchor_date: datetime | None = None, timezone: str = "UTC",
                 parameters: dict | None = None, active: bool = True, slug: str | None = None) -> None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
        object.__setattr__(self, "seconds", seconds)
        object.__setattr__(self, "anchor_date", anchor_date)
        super().__init__(timezone, dict(parameters or {}), active, slug)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"interval": self.seconds, **self._common()}
        if self.anchor_date is not None:
            out["anchor_date"] = self.anchor_date.isoformat()
        return out


@dataclass(frozen=True)
class RRule(_Schedule):
    """``RRule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9")``."""

    rrule: str = ""

    def __init__(self, rrule: str, *, timezone: str = "UTC", parameters: dict | None = None, active: bool = True,
                 slug: str | None = None) -> None:
        object.__setattr__(self, "rrule", rrule)
        super().__init__(timezone, dict(parameters or {}), active, slug)

    def to_api(self) -> dict[str, Any]:
        return {"rrule": self.rrule, **self._common()}


Schedule = Cron | Interval | RRule


def schedules_to_api(cron: str | None = None, interval: float | timedelta | None = None, rrule: str | None = None,
                     schedules: list[Schedule | dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if cron:
        out.append(Cron(cron).to_api())
    if interval is not None:
        out.append(Interval(interval).to_api())
    if rrule:
        out.append(RRule(rrule).to_api())
    for item in schedules or []:
        out.append(dict(item) if isinstance(item, dict) else item.to_api())
    return out
