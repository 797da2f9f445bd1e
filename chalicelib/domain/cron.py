"""Cron expressions: strict parsing and next-fire computation. Pure: no AWS, no Chalice.

This is the only module of the project that knows cron syntax. Everything else
holds a :class:`CronSchedule` and asks it for fire times.

Syntax
------
Five fields, ``minute hour day-of-month month day-of-week``, each a list of
items separated by ``,``; an item is ``*``, a value ``N``, a range ``A-B``, any
of those with a step ``/S`` (``N/S`` means ``N-max/S``), or a Jenkins-style hash
token ``H``, ``H(A-B)``, ``H/S``, ``H(A-B)/S``. Month names ``JAN``-``DEC`` and
day names ``SUN``-``SAT`` are accepted in any case; ``0`` and ``7`` are both
Sunday. The aliases ``@hourly @daily @midnight @weekly @monthly @yearly
@annually`` stand for their usual five-field forms and are never hashed.
Nothing else is accepted: no seconds or year field, no ``L``/``W``/``#``/``?``,
no random ``R`` tokens, no wrapping ranges such as ``FRI-MON``. Validation is
strict and every error is a :class:`CronError` whose message names the field.

Hash tokens
-----------
``H`` picks a value from the field's range (``H(A-B)``: from ``A``..``B``) with
the same formula croniter uses for ``hash_id`` (``crc32(seed) >> field_index``
modulo the span), so the same agent id always gets the same time and different
ids spread out. Two deliberate choices: a bare ``H`` (or ``H/S``) in the
day-of-month field draws from 1-28, as in Jenkins, so a hashed monthly job runs
every month; and when an expression uses ``H`` but no hash id is given, the
seed ``"default"`` is used (and stored as :attr:`CronSchedule.hash_id`), so the
expression can still be validated and previewed. An expression without ``H``
stores ``hash_id=None`` whatever was passed, so ``@daily`` is never hashed.

Time zones and evaluation (Vixie/Debian cron semantics)
-------------------------------------------------------
Fields are matched against the wall clock of the schedule's IANA zone; results
are aware UTC datetimes.

* Day-of-month and day-of-week are ORed when both are restricted, ANDed when
  either field starts with ``*``.
* A job whose minute and hour fields both do not start with ``*`` is a
  *fixed-time* job: a wall time inside a spring-forward gap fires once, at the
  first instant after the gap (several gap times collapse into that one run);
  a wall time inside a fall-back overlap fires once, at its first occurrence.
* Other (*wildcard*) jobs fire at every real instant whose wall time matches:
  nothing inside a gap, and in both copies of a repeated hour.

Implementation
--------------
croniter is lax (it accepts reversed ranges, ``5-5`` as the whole field,
``* * 31 2 *`` ...), slow, and does not follow the DST rules above, so the
fields are parsed here into bit masks and the search runs on integers;
compiled schedules are cached. The results agree with cronsim and with croniter
(``implement_cron_bug=True``) wherever those two agree with Vixie cron.
"""
from __future__ import annotations

import binascii
import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Iterator, Protocol, cast
from zoneinfo import ZoneInfo

__all__ = ["CronError", "CronSchedule", "parse_timezone", "schedule_warnings"]

UTC = timezone.utc
_MINUTE = timedelta(minutes=1)
_ZERO = timedelta(0)


class _WallZone(Protocol):
    """A ZoneInfo as the evaluator uses it: the offset of a wall time, never None."""

    def utcoffset(self, dt: datetime, /) -> timedelta: ...

# A match, if there is one, recurs within one 400-year Gregorian cycle.
_SEARCH_YEARS = 401
_MAX_YEAR = 9998

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# Range of ``*`` (day-of-week: 7 is only an alias of 0).
_STAR_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
# Range a bare ``H`` / ``H/S`` draws from (day-of-month: 1-28, see module doc).
_HASH_BOUNDS = ((0, 59), (0, 23), (1, 28), (1, 12), (0, 6))
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {n: i + 1 for i, n in enumerate(_MONTH_NAMES)},
    {n: i for i, n in enumerate(_DAY_NAMES)},
)
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
DEFAULT_HASH_SEED = "default"

_HASH_RE = re.compile(r"^H(?:\(([^()]*)\))?$")
_NUMBER_RE = re.compile(r"^[0-9]+$")
_EXTENSION_RE = re.compile(r"^(?:[0-9]*[LW][0-9]*|LW|R(?:\(.*\))?|.*[#?].*)$")
_EXTENSION_PROBLEM = "the L, W, #, ? and R extensions are not supported"
_TZ_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*$")
# Files in a zoneinfo directory that load but are not IANA zones to schedule in.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_ZONE_PREFIXES = ("posix/", "right/")


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------- time zones


@lru_cache(maxsize=512)
def _load_zone(name: str) -> ZoneInfo:
    if not _TZ_NAME_RE.match(name) or name in _NOT_ZONES or name.startswith(_NOT_ZONE_PREFIXES):
        raise CronError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError (not a TZif file), OSError
        raise CronError(f"unknown time zone {name!r}") from None


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; :class:`CronError` for anything else."""
    if not isinstance(name, str):
        raise CronError(f"unknown time zone {name!r}")
    return _load_zone(name)


# ------------------------------------------------------------------- parsing


def _bits(values: Iterable[int]) -> int:
    mask = 0
    for v in values:
        mask |= 1 << v
    return mask


def _hash_value(seed: bytes, index: int, low: int, high: int) -> int:
    # croniter's HashExpander formula, so the values match croniter's hash_id.
    crc = binascii.crc32(seed) & 0xFFFFFFFF
    return ((crc >> index) % (high - low + 1)) + low


class _FieldParser:
    def __init__(self, index: int, text: str, seed: bytes | None) -> None:
        self.index = index
        self.text = text
        self.seed = seed
        self.low, self.high = _BOUNDS[index]
        self.has_hash = False

    def fail(self, problem: str) -> CronError:
        return CronError(f"bad {FIELD_NAMES[self.index]} field {self.text!r}: {problem}")

    def value(self, token: str) -> int:
        if _NUMBER_RE.match(token):
            v = int(token)
        elif token in _NAMES[self.index]:
            return _NAMES[self.index][token]
        elif token == "":
            raise self.fail("a value is missing")
        elif _EXTENSION_RE.match(token):
            raise self.fail(_EXTENSION_PROBLEM)
        elif self.index >= 3 and token.isalpha():
            kind = "month" if self.index == 3 else "day"
            raise self.fail(f"{token!r} is not a {kind} name or number")
        else:
            raise self.fail(f"{token!r} is not a number")
        if not self.low <= v <= self.high:
            raise self.fail(f"{v} is out of range {self.low}-{self.high}")
        return v

    def span(self, token: str) -> tuple[int, int]:
        start_text, _, end_text = token.partition("-")
        start, end = self.value(start_text), self.value(end_text)
        if start > end:
            raise self.fail(f"range start {start} is above end {end}")
        return start, end

    def parse(self) -> set[int]:
        values: set[int] = set()
        for item in self.text.upper().split(","):
            values.update(self.item(item))
        if self.index == 4 and 7 in values:
            values.discard(7)
            values.add(0)
        return values

    def item(self, item: str) -> range:
        if item == "":
            raise self.fail("empty list item")
        base, slash, step_text = item.partition("/")
        if _EXTENSION_RE.match(base):
            raise self.fail(_EXTENSION_PROBLEM)
        step = 1
        if slash:
            if not _NUMBER_RE.match(step_text):
                raise self.fail(f"step {step_text!r} is not a positive whole number")
            step = int(step_text)
            if step == 0:
                raise self.fail("step must be at least 1, not 0")
        if base == "*":
            start, end = _STAR_BOUNDS[self.index]
        elif base.startswith("H"):
            start, end = self.hashed(base, step, bool(slash))
        elif "-" in base:
            start, end = self.span(base)
        else:
            start = self.value(base)
            end = self.high if slash else start
        return range(start, end + 1, step)

    def hashed(self, base: str, step: int, has_step: bool) -> tuple[int, int]:
        m = _HASH_RE.match(base)
        if not m:
            raise self.fail(f"{base!r} is not a valid H token (use H, H(A-B), H/S or H(A-B)/S)")
        self.has_hash = True
        if m.group(1) is None:
            low, high = _HASH_BOUNDS[self.index]
        else:
            low, high = self.span(m.group(1))
        seed = self.seed if self.seed is not None else DEFAULT_HASH_SEED.encode()
        if not has_step:
            v = _hash_value(seed, self.index, low, high)
            return v, v
        first = _hash_value(seed, self.index, low, min(low + step - 1, high))
        return first, high


class _Plan:
    """A compiled schedule: bit masks of the fields and the zone."""

    __slots__ = (
        "minutes", "hours", "months", "dom", "dow_by_first", "day_and",
        "wildcard", "fixed_hour", "zone", "is_utc", "has_hash", "_days",
    )

    def __init__(self, sets: list[set[int]], day_and: bool, wildcard: bool, fixed_hour: bool,
                 zone: ZoneInfo, has_hash: bool) -> None:
        self.minutes = _bits(sets[0])
        self.hours = _bits(sets[1])
        self.dom = _bits(sets[2])
        self.months = _bits(sets[3])
        dow = sets[4]
        # Day-of-month bits for a month whose 1st is cron weekday ``first``.
        self.dow_by_first = tuple(
            _bits(d for d in range(1, 32) if (first + d - 1) % 7 in dow) for first in range(7)
        )
        self.day_and = day_and
        self.wildcard = wildcard
        self.fixed_hour = fixed_hour
        self.zone = zone
        self.is_utc = zone.key in ("UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu")
        self.has_hash = has_hash
        self._days: dict[tuple[int, int], int] = {}

    def days(self, year: int, month: int) -> int:
        """Bits of the days of ``year``-``month`` that match both day fields."""
        key = (year, month)
        mask = self._days.get(key)
        if mask is None:
            first = (date(year, month, 1).weekday() + 1) % 7
            length = calendar.monthrange(year, month)[1]
            dow = self.dow_by_first[first]
            mask = (self.dom & dow) if self.day_and else (self.dom | dow)
            mask &= (1 << (length + 1)) - 2
            if len(self._days) > 4096:
                self._days.clear()
            self._days[key] = mask
        return mask

    def search(self, t: datetime) -> datetime | None:
        """The first matching wall time at or after naive ``t`` (whole minutes)."""
        y, mo, d, h, mi = t.year, t.month, t.day, t.hour, t.minute
        limit = min(y + _SEARCH_YEARS, _MAX_YEAR)
        months, hours, minutes = self.months, self.hours, self.minutes
        while y <= limit:
            m = months >> mo
            if not m:
                y, mo, d, h, mi = y + 1, 1, 1, 0, 0
                continue
            nxt = mo + (m & -m).bit_length() - 1
            if nxt != mo:
                mo, d, h, mi = nxt, 1, 0, 0
            m = self.days(y, mo) >> d
            if not m:
                mo, d, h, mi = mo + 1, 1, 0, 0
                if mo > 12:
                    y, mo = y + 1, 1
                continue
            nxt = d + (m & -m).bit_length() - 1
            if nxt != d:
                d, h, mi = nxt, 0, 0
            m = hours >> h
            if not m:
                d, h, mi = d + 1, 0, 0
                continue
            nxt = h + (m & -m).bit_length() - 1
            if nxt != h:
                h, mi = nxt, 0
            m = minutes >> mi
            if not m:
                h, mi = h + 1, 0
                continue
            return datetime(y, mo, d, h, mi + (m & -m).bit_length() - 1)
        return None

    # --- evaluation in the zone -------------------------------------------

    def next_after(self, after: datetime) -> datetime | None:
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("next fire times need a timezone-aware datetime")
        if after.year >= _MAX_YEAR:
            return None
        if self.is_utc:
            after = after.astimezone(UTC)
            c = self.search(after.replace(second=0, microsecond=0, tzinfo=None) + _MINUTE)
            return None if c is None else c.replace(tzinfo=UTC)
        zone = self.zone
        local = after.astimezone(zone)
        start = local.replace(second=0, microsecond=0, tzinfo=None, fold=0) + _MINUTE
        if self.wildcard:
            return self._next_wildcard(after, local, start)
        return self._next_fixed(after, start)

    def _next_fixed(self, after: datetime, start: datetime) -> datetime | None:
        zone = cast(_WallZone, self.zone)
        while True:
            c = self.search(start)
            if c is None:
                return None
            off0 = zone.utcoffset(c)
            off1 = zone.utcoffset(c.replace(fold=1))
            if off0 >= off1:  # normal, or in an overlap: the first occurrence only
                u = (c - off0).replace(tzinfo=UTC)
            else:  # in a gap: the first instant after it
                g = _gap_end(zone, c, off0, off1)
                u = (g - zone.utcoffset(g)).replace(tzinfo=UTC)
            if u > after:
                return u
            start = c + _MINUTE

    def _next_wildcard(self, after: datetime, local: datetime, start: datetime) -> datetime | None:
        zone = cast(_WallZone, self.zone)
        off = cast(timedelta, local.utcoffset())
        if local.fold == 0:
            off1 = zone.utcoffset(local.replace(fold=1))
            if off1 < off:
                # ``after`` is in the first pass of a repeated span [s, e): once
                # the first pass is over, the wall clock runs through [s, e) again.
                w = start - _MINUTE
                s = _overlap_start(zone, w, off - off1)
                e = s + (off - off1)
                c = self.search(start)
                if c is not None and c < e:
                    return (c - off).replace(tzinfo=UTC)
                c = self.search(s)
                if c is not None and c < e:
                    return (c - off1).replace(tzinfo=UTC)
                start = e
        while True:
            c = self.search(start)
            if c is None:
                return None
            off0 = zone.utcoffset(c)
            off1 = zone.utcoffset(c.replace(fold=1))
            if off0 == off1:
                u = (c - off0).replace(tzinfo=UTC)
                if u > after:
                    return u
                start = c + _MINUTE
            elif off0 > off1:  # repeated: both copies
                u = (c - off0).replace(tzinfo=UTC)
                if u > after:
                    return u
                u = (c - off1).replace(tzinfo=UTC)
                if u > after:
                    return u
                start = c + _MINUTE
            else:  # does not exist: no run, go on after the gap
                start = _gap_end(zone, c, off0, off1)


def _is_gap(zone: _WallZone, t: datetime) -> bool:
    return zone.utcoffset(t) < zone.utcoffset(t.replace(fold=1))


def _gap_end(zone: _WallZone, c: datetime, off0: timedelta, off1: timedelta) -> datetime:
    """The first existing whole-minute wall time after the gap that holds ``c``."""
    lo, hi = 0, int((off1 - off0) // _MINUTE)  # c + lo is in the gap, c + hi is not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _is_gap(zone, c + mid * _MINUTE):
            lo = mid
        else:
            hi = mid
    return c + hi * _MINUTE


def _overlap_start(zone: _WallZone, w: datetime, length: timedelta) -> datetime:
    """The first wall minute of the repeated span that holds ``w``."""
    lo, hi = -int(length // _MINUTE), 0  # w + lo is not repeated, w + hi is

    def repeated(t: datetime) -> bool:
        return zone.utcoffset(t) != zone.utcoffset(t.replace(fold=1))

    while hi - lo > 1:
        mid = (lo + hi) // 2
        if repeated(w + mid * _MINUTE):
            hi = mid
        else:
            lo = mid
    return w + hi * _MINUTE


def _never_fires(dom_text: str, days: set[int], months: set[int]) -> CronError | None:
    longest = max(_MAX_DAYS[m] for m in months)
    if min(days) <= longest:
        return None
    bad = sorted(days)
    what = f"day {bad[0]} never occurs" if len(bad) == 1 else (
        "days " + ", ".join(map(str, bad)) + " never occur")
    where = ", ".join(_MONTH_NAMES[m - 1] for m in sorted(months))
    return CronError(f"bad day-of-month field {dom_text!r}: {what} in {where}")


@lru_cache(maxsize=2048)
def _compile(expression: str, timezone_name: str, hash_id: str | None) -> _Plan:
    zone = parse_timezone(timezone_name)
    if not expression:
        raise CronError("empty cron expression")
    text = expression
    if text.startswith("@"):
        alias = ALIASES.get(text.lower())
        if alias is None:
            raise CronError(f"unknown alias {text!r} (supported: {', '.join(ALIASES)})")
        text = alias
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    seed = None if hash_id is None else hash_id.encode("utf-8")
    sets = []
    has_hash = False
    for index, part in enumerate(parts):
        parser = _FieldParser(index, part, seed)
        sets.append(parser.parse())
        has_hash = has_hash or parser.has_hash
    day_and = parts[2].startswith("*") or parts[4].startswith("*")
    if day_and:
        error = _never_fires(parts[2], sets[2], sets[3])
        if error is not None:
            raise error
    wildcard = parts[0].startswith("*") or parts[1].startswith("*")
    fixed_hour = not parts[1].startswith("*")
    return _Plan(sets, day_and, wildcard, fixed_hour, zone, has_hash)


_H_TOKEN_RE = re.compile(r"(?:^|[\s,])[Hh](?:$|[\s,(/])")


def _uses_hash(expression: str) -> bool:
    return not expression.startswith("@") and bool(_H_TOKEN_RE.search(expression))


# ------------------------------------------------------------------ schedule


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression in an IANA zone. Build it with :meth:`parse`."""

    expression: str
    timezone: str = "UTC"
    hash_id: str | None = None
    _plan: _Plan = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise CronError(f"a cron expression must be a string, not {type(self.expression).__name__}")
        if not isinstance(self.timezone, str):
            raise CronError(f"unknown time zone {self.timezone!r}")
        if self.hash_id is not None and not isinstance(self.hash_id, str):
            raise CronError(f"a hash id must be a string, not {type(self.hash_id).__name__}")
        expression = self.expression.strip()
        hash_id = self.hash_id
        if _uses_hash(expression):
            if hash_id is None:
                hash_id = DEFAULT_HASH_SEED
        else:
            hash_id = None
        # Compile first: an invalid time zone or expression raises CronError.
        plan = _compile(expression, self.timezone, hash_id)
        if not plan.has_hash:
            hash_id = None
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "hash_id", hash_id)
        object.__setattr__(self, "_plan", plan)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC", hash_id: str | None = None) -> CronSchedule:
        """Validate strictly; raises :class:`CronError` naming the field and the problem."""
        return cls(expression, timezone, hash_id)

    @property
    def has_hash(self) -> bool:
        return self._plan.has_hash

    @property
    def zone(self) -> ZoneInfo:
        return self._plan.zone

    def next_after(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware, any zone), as an aware UTC datetime."""
        t = self._plan.next_after(after)
        if t is None:
            raise CronError(f"{self.expression!r} does not fire again after {after.isoformat()}")
        return t

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Successive fires strictly after ``after``, in UTC."""
        plan = self._plan
        t = plan.next_after(after)
        while t is not None:
            yield t
            t = plan.next_after(t)

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        out: list[datetime] = []
        if n <= 0:
            return out
        for t in self.iter_after(after):
            out.append(t)
            if len(out) >= n:
                break
        return out

    def between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fires ``t`` with ``start < t <= end``, at most ``limit`` of them."""
        out: list[datetime] = []
        if limit <= 0 or end <= start:
            return out
        for t in self.iter_after(start):
            if t > end:
                break
            out.append(t)
            if len(out) >= limit:
                break
        return out

    def min_interval_seconds(self, now: datetime, horizon_fires: int = 200) -> float | None:
        """Smallest gap between consecutive fires among the next ``horizon_fires`` fires."""
        fires = self.next_n(now, horizon_fires)
        if len(fires) < 2:
            return None
        return min((b - a).total_seconds() for a, b in zip(fires, fires[1:]))


# ------------------------------------------------------------------ warnings


def _offset_at(zone: ZoneInfo, u: datetime) -> timedelta:
    return u.astimezone(zone).utcoffset() or _ZERO


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[tuple[datetime, timedelta, timedelta]]:
    """(instant, offset before, offset after) of each offset change in (start, end]."""
    step = timedelta(days=1)
    u, before = start, _offset_at(zone, start)
    while u < end:
        n = min(u + step, end)
        after = _offset_at(zone, n)
        if after != before:
            lo, hi = u, n  # offset at lo is ``before``, at hi is not
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid <= lo:
                    break
                if _offset_at(zone, mid) == before:
                    lo = mid
                else:
                    hi = mid
            yield hi, before, _offset_at(zone, hi)
            before = after
        u = n


def _matches_in(plan: _Plan, start: datetime, end: datetime, cap: int = 4) -> tuple[list[datetime], int]:
    """Matching wall times in [start, end): the first ``cap`` and how many there are."""
    found: list[datetime] = []
    count = 0
    t = start
    while True:
        c = plan.search(t)
        if c is None or c >= end:
            return found, count
        count += 1
        if len(found) < cap:
            found.append(c)
        t = c + _MINUTE


def _fmt_times(found: list[datetime], count: int) -> str:
    names = [c.strftime("%H:%M") for c in found]
    if count == 1:
        return names[0]
    if count <= len(names):
        return ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:3]) + f" ... ({count} times)"


def _fmt_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def schedule_warnings(schedule: CronSchedule, now: datetime, timeout_seconds: int | None = None) -> list[str]:
    """Human-readable warnings about ``schedule`` from ``now`` on; empty if there is nothing to say.

    * a wall time it names falls in a DST gap or overlap within the next year;
    * runs come closer together than ``timeout_seconds``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("schedule_warnings needs a timezone-aware datetime")
    plan = schedule._plan
    tz = schedule.timezone
    warnings: list[str] = []
    # Jobs whose hour field starts with '*' run on every real hour by design.
    if not plan.is_utc and plan.fixed_hour:
        zone = plan.zone
        start = now.astimezone(UTC).replace(second=0, microsecond=0)
        for instant, before, after in _transitions(zone, start, start + timedelta(days=366)):
            old_wall = (instant + before).replace(tzinfo=None)
            new_wall = (instant + after).replace(tzinfo=None)
            if after > before:
                found, count = _matches_in(plan, old_wall, new_wall)
                if not count:
                    continue
                times = _fmt_times(found, count)
                verb = "does" if count == 1 else "do"
                head = f"{times} {verb} not exist on {found[0].date().isoformat()} in {tz} (DST gap)"
                if plan.wildcard:
                    tail = "it is skipped that day" if count == 1 else "those runs are skipped that day"
                else:
                    at = new_wall.strftime("%H:%M")
                    tail = f"it runs once at {at}" if count == 1 else f"they run once, together, at {at}"
                warnings.append(f"{head}; {tail}")
            else:
                found, count = _matches_in(plan, new_wall, old_wall)
                if not count:
                    continue
                times = _fmt_times(found, count)
                verb = "occurs" if count == 1 else "occur"
                head = f"{times} {verb} twice on {found[0].date().isoformat()} in {tz} (DST overlap)"
                if plan.wildcard:
                    tail = "it runs both times" if count == 1 else "they run both times"
                else:
                    tail = "it runs once, at the first" if count == 1 else "they run once each, at the first"
                warnings.append(f"{head}; {tail}")
    if timeout_seconds is not None and timeout_seconds > 0:
        gap = schedule.min_interval_seconds(now)
        if gap is not None and gap < timeout_seconds:
            warnings.append(
                f"runs as close as {_fmt_seconds(gap)} s apart, less than the agent's timeout of "
                f"{_fmt_seconds(timeout_seconds)} s: runs would overlap"
            )
    return warnings
