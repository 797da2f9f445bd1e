"""Schedule expressions: cron, ``rate()`` and ``at()``, behind one fire-time interface. Pure.

Every part of the scheduler that needs fire times (the tick's planner, the
schedule answers, validate, bulk, conflicts, the fire ledger, backfill) holds a
:class:`FireTimes` and asks it for fires; only this module knows which kind of
expression it is.

``cron``
    five fields, aliases and ``H``, evaluated in the schedule's zone
    (:mod:`chalicelib.domain.cron`).
``rate(N minute|minutes|hour|hours|day|days)``
    fires at ``anchor + k * period`` for ``k = 0, 1, 2 ...``. The anchor is the
    schedule's ``startAt`` when given, else the time the schedule was first
    saved (saving the same expression again keeps it). The period is elapsed
    time: ``rate(1 day)`` is every 86,400 s, so in a zone with daylight saving
    time its wall time moves by an hour at each change. A cron expression keeps
    the wall time.
``at(YYYY-MM-DDTHH:MM:SS)``
    fires once, at that wall time in the schedule's zone. A wall time that does
    not exist there (inside a spring-forward gap) is refused; a repeated one
    (inside a fall-back overlap) fires at its first occurrence. Whether it is in
    the past is the caller's question (:meth:`AtFires.fire_at`), asked when the
    schedule is saved, not when it is read back after it fired.

Fire times are aware UTC datetimes, strictly after the instant asked about.
``excludeDates`` (local dates in the schedule's zone) are applied on top by
:class:`ExcludedDates`.
"""
from __future__ import annotations

import functools
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, ClassVar, Iterable, Iterator
from zoneinfo import ZoneInfo

from chalicelib.domain.cron import CronError, CronSchedule, parse_timezone, schedule_warnings

__all__ = [
    "ExpressionError", "FireTimes", "CronFires", "RateFires", "AtFires", "ExcludedDates",
    "parse_expression", "expression_kind", "fire_times_for", "MAX_EXCLUDE_DATES",
]

UTC = timezone.utc
ExpressionError = CronError  # one error class: ``message`` says what is wrong

MAX_EXCLUDE_DATES = 366
MAX_RATE_SECONDS = 366 * 86400
MIN_INTERVAL_FIRES = 500  # fires examined for the shortest gap of a cron expression
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_RATE_RE = re.compile(r"^rate\(\s*([0-9]+)\s+([A-Za-z]+)\s*\)$", re.IGNORECASE)
_AT_RE = re.compile(r"^at\(\s*([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\s*\)$", re.IGNORECASE)
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class FireTimes(ABC):
    """What every expression kind answers: its fires, its shortest gap, its warnings."""

    kind: ClassVar[str]
    expression: str  # canonical text (what answers and storage carry)
    timezone: str
    hash_id: str | None = None  # the seed of cron's H tokens (None for the other kinds)

    @property
    def zone(self) -> ZoneInfo:
        return parse_timezone(self.timezone)

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal keys: equal fire times (for caches)."""
        return (self.kind, self.expression, self.timezone)

    @abstractmethod
    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after`` (aware), in UTC; None: it never fires again."""

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        t = self.next_after(after)
        while t is not None:
            yield t
            t = self.next_after(t)

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        out: list[datetime] = []
        for t in self.iter_after(after):
            if len(out) >= n:
                break
            out.append(t)
        return out

    @abstractmethod
    def min_interval_seconds(self, now: datetime) -> float | None:
        """The shortest gap between two consecutive fires from ``now`` on; None: at most one fire."""

    def warnings(self, now: datetime, timeout_seconds: int | None = None) -> list[str]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r}, {self.timezone!r})"


class CronFires(FireTimes):
    kind = "cron"

    def __init__(self, schedule: CronSchedule) -> None:
        self.schedule = schedule
        self.expression = schedule.expression
        self.timezone = schedule.timezone
        self.hash_id = schedule.hash_id

    @property
    def key(self) -> tuple[Any, ...]:
        return ("cron", self.expression, self.timezone, self.schedule.hash_id)

    def next_after(self, after: datetime) -> datetime | None:
        return self.schedule._plan.next_after(after)

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        return self.schedule.iter_after(after)

    def min_interval_seconds(self, now: datetime) -> float | None:
        return self.schedule.min_interval_seconds(now, MIN_INTERVAL_FIRES)

    def warnings(self, now: datetime, timeout_seconds: int | None = None) -> list[str]:
        return schedule_warnings(self.schedule, now, timeout_seconds)


class RateFires(FireTimes):
    kind = "rate"

    def __init__(self, expression: str, count: int, unit: str, anchor: float, tz: str = "UTC") -> None:
        self.expression = expression
        self.count = count
        self.unit = unit
        self.period = count * _UNITS[unit]
        self.anchor = float(anchor)
        self.timezone = tz

    @property
    def key(self) -> tuple[Any, ...]:
        return ("rate", self.expression, self.timezone, self.anchor)

    def next_after(self, after: datetime) -> datetime | None:
        a = after.timestamp()
        if a < self.anchor:
            return _dt(self.anchor)
        k = math.floor((a - self.anchor) / self.period) + 1
        t = self.anchor + k * self.period
        while t <= a:  # float rounding
            k += 1
            t = self.anchor + k * self.period
        return _dt(t)

    def min_interval_seconds(self, now: datetime) -> float | None:
        return float(self.period)

    def warnings(self, now: datetime, timeout_seconds: int | None = None) -> list[str]:
        out: list[str] = []
        if self.period % 3600 == 0 and self.period > 3600:
            change = _next_offset_change(self.zone, now.timestamp())
            if change is not None:
                out.append(
                    f"{self.expression} counts elapsed time ({self.period // 3600} h), not wall time: "
                    f"after the daylight saving change on {change.isoformat()} in {self.timezone} it fires "
                    "an hour earlier or later on the clock; use a cron expression to keep the wall time"
                )
        if timeout_seconds is not None and 0 < self.period < timeout_seconds:
            out.append(
                f"runs {self.period} s apart, less than the agent's timeout of {timeout_seconds} s: runs would overlap"
            )
        return out


class AtFires(FireTimes):
    kind = "at"

    def __init__(self, expression: str, wall: datetime, tz: str, fire_at: float) -> None:
        self.expression = expression
        self.wall = wall
        self.timezone = tz
        self.fire_at = fire_at

    def next_after(self, after: datetime) -> datetime | None:
        return _dt(self.fire_at) if self.fire_at > after.timestamp() else None

    def min_interval_seconds(self, now: datetime) -> float | None:
        return None


def expression_kind(text: str) -> str:
    t = text.strip().lower()
    if t.startswith("rate("):
        return "rate"
    if t.startswith("at("):
        return "at"
    return "cron"


def parse_expression(text: str, tz: str = "UTC", *, hash_id: str | None = None, anchor: float | None = None) -> FireTimes:
    """Validate strictly and build the fire times; :class:`ExpressionError` says what is wrong.

    ``anchor`` (epoch s) is required by ``rate()`` and ignored by the other kinds.
    """
    if not isinstance(text, str):
        raise ExpressionError("an expression must be a string")
    kind = expression_kind(text)
    if kind == "cron":
        return CronFires(CronSchedule.parse(text, tz, hash_id=hash_id))
    parse_timezone(tz)
    stripped = text.strip()
    if kind == "rate":
        m = _RATE_RE.match(stripped)
        if not m:
            raise ExpressionError(
                f"{stripped!r} is not a rate: write rate(N minute|minutes|hour|hours|day|days), e.g. rate(5 minutes)"
            )
        count, unit = int(m.group(1)), m.group(2).lower()
        if unit not in _UNITS:
            raise ExpressionError(f"unknown unit {m.group(2)!r} in {stripped!r}: use minute(s), hour(s) or day(s)")
        if count < 1:
            raise ExpressionError(f"the rate in {stripped!r} must be at least 1")
        if count * _UNITS[unit] > MAX_RATE_SECONDS:
            raise ExpressionError(f"the rate in {stripped!r} must be at most 366 days")
        if anchor is None:
            raise ExpressionError("a rate expression needs an anchor")
        return RateFires(f"rate({count} {unit})", count, unit, anchor, tz)
    m = _AT_RE.match(stripped)
    if not m:
        raise ExpressionError(f"{stripped!r} is not a one-off time: write at(YYYY-MM-DDTHH:MM:SS), e.g. at(2026-12-31T23:00:00)")
    try:
        y, mo, d, h, mi, sec = (int(g) for g in m.groups())
        wall = datetime(y, mo, d, h, mi, sec)
    except ValueError as exc:
        raise ExpressionError(f"{stripped!r} is not a valid date and time ({exc})") from None
    zone = parse_timezone(tz)
    fire_at = local_to_utc(wall, zone)
    if fire_at is None:
        raise ExpressionError(f"{wall.isoformat()} does not exist in {tz} (it falls in a daylight saving gap)")
    return AtFires(f"at({wall.isoformat()})", wall, tz, fire_at)


def local_to_utc(wall: datetime, zone: ZoneInfo) -> float | None:
    """The instant of a naive wall time in ``zone`` (its first occurrence); None inside a gap."""
    aware = wall.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != wall:
        return None
    return aware.timestamp()


def _next_offset_change(zone: ZoneInfo, start: float, days: int = 366) -> date | None:
    """The local date of the first UTC offset change within ``days`` of ``start`` (day steps)."""
    prev = _dt(start).astimezone(zone).utcoffset()
    for d in range(1, days + 1):
        t = _dt(start + d * 86400).astimezone(zone)
        if t.utcoffset() != prev:
            return t.date()
    return None


@functools.lru_cache(maxsize=20_000)
def _cached(text: str, tz: str, hash_id: str | None, anchor: float | None) -> FireTimes:
    return parse_expression(text, tz, hash_id=hash_id, anchor=anchor)


def fire_times_for(spec: Any, agent_id: str) -> FireTimes:
    """The fire times of a stored schedule (``ScheduleSpec``), cached per expression."""
    text = spec.cron_expression
    anchor = spec.anchor_at if expression_kind(text) == "rate" else None
    if anchor is None and expression_kind(text) == "rate":
        anchor = spec.start_at if spec.start_at is not None else spec.created_at
    return _cached(text, spec.timezone, agent_id, anchor)


# --- excluded dates ---------------------------------------------------------------------------
def parse_exclude_dates(values: Iterable[str], field: str = "excludeDates") -> tuple[str, ...]:
    """Sorted, de-duplicated ``YYYY-MM-DD`` dates; :class:`ExpressionError` names the bad one."""
    out: set[str] = set()
    for i, v in enumerate(values):
        if not isinstance(v, str) or not _DATE_RE.match(v):
            raise ExpressionError(f"{field}[{i}] must be a date YYYY-MM-DD, got {v!r}")
        try:
            date.fromisoformat(v)
        except ValueError:
            raise ExpressionError(f"{field}[{i}] is not a calendar date: {v!r}") from None
        out.add(v)
    if len(out) > MAX_EXCLUDE_DATES:
        raise ExpressionError(f"{field} may hold at most {MAX_EXCLUDE_DATES} dates")
    return tuple(sorted(out))


@dataclass(frozen=True)
class ExcludedDates:
    """Local dates (in the schedule's zone) whose fires never run."""

    dates: frozenset[str]
    timezone: str = "UTC"

    @classmethod
    def of(cls, dates: Iterable[str], tz: str) -> "ExcludedDates":
        return cls(frozenset(dates), tz)

    def __bool__(self) -> bool:
        return bool(self.dates)

    def local_date(self, epoch: float) -> date:
        return _dt(epoch).astimezone(parse_timezone(self.timezone)).date()

    def excludes(self, epoch: float) -> bool:
        return bool(self.dates) and self.local_date(epoch).isoformat() in self.dates

    def day_end(self, epoch: float) -> float:
        """The first instant of the local day after the one ``epoch`` falls on."""
        zone = parse_timezone(self.timezone)
        nxt = self.local_date(epoch) + timedelta(days=1)
        return datetime.combine(nxt, time(0), tzinfo=zone).timestamp()

    def included_after(self, fires: FireTimes, after: datetime, limit: int = 100_000) -> Iterator[datetime]:
        """``fires.iter_after(after)`` without the excluded dates (a whole excluded day is jumped)."""
        t = fires.next_after(after)
        examined = 0
        while t is not None and examined < limit:
            examined += 1
            e = t.timestamp()
            if self.excludes(e):
                t = fires.next_after(_dt(max(e, self.day_end(e) - 0.001)))
                continue
            yield t
            t = fires.next_after(t)
