"""Unit tests of chalicelib.domain.cron: parsing, next-fire times, DST, H tokens, warnings."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from cronsim import CronSim, CronSimError

from chalicelib.domain.cron import CronError, CronSchedule, parse_timezone, schedule_warnings

UTC = timezone.utc


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _local(times: list[datetime], tz: str) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).isoformat() for t in times]


# ------------------------------------------------------------- cron vectors
# Cases from the test suites of cronsim, croniter, cron-parser and robfig/cron: see data/README.md.

VECTORS_PATH = Path(__file__).resolve().parent / "data" / "cron_vectors.json"
VECTORS: list[dict] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def test_all_vectors_are_loaded() -> None:
    assert len(VECTORS) == 79


@pytest.mark.parametrize(
    "vector", VECTORS, ids=[f"{i}:{v['expr']}@{v['tz']}" for i, v in enumerate(VECTORS)]
)
def test_vector(vector: dict) -> None:
    schedule = CronSchedule.parse(vector["expr"], vector["tz"])
    expected = [_utc(e) for e in vector["expected"]]
    got = schedule.next_n(datetime.fromisoformat(vector["start"]), len(expected))
    assert _local(got, vector["tz"]) == _local(expected, vector["tz"]), vector["source"]
    assert all(t.tzinfo is UTC for t in got)


# ------------------------------------------------------------------- basics


def test_parse_keeps_expression_stripped_and_zone() -> None:
    s = CronSchedule.parse("  0 9 * * 1-5 \n", "Europe/London")
    assert s.expression == "0 9 * * 1-5"
    assert s.timezone == "Europe/London"
    assert s.hash_id is None
    assert not s.has_hash
    assert s == CronSchedule.parse("0 9 * * 1-5", "Europe/London")
    assert hash(s) == hash(CronSchedule.parse("0 9 * * 1-5", "Europe/London"))


def test_next_after_is_strictly_after_and_utc() -> None:
    s = CronSchedule.parse("*/15 * * * *")
    at = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert s.next_after(at) == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert s.next_after(at - timedelta(microseconds=1)) == at
    # any input zone
    assert s.next_after(at.astimezone(ZoneInfo("Asia/Kolkata"))) == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert s.next_after(at).tzinfo is UTC


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        CronSchedule.parse("* * * * *").next_after(datetime(2026, 1, 1))


def test_iter_next_n_between() -> None:
    s = CronSchedule.parse("0 */6 * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = s.next_n(start, 5)
    assert first == [start + timedelta(hours=h) for h in (6, 12, 18, 24, 30)]
    it = s.iter_after(start)
    assert [next(it) for _ in range(5)] == first
    assert s.next_n(start, 0) == []
    assert s.between(start, start + timedelta(hours=24), 10) == first[:4]  # end is inclusive
    assert s.between(start, start + timedelta(hours=24), 2) == first[:2]
    assert s.between(start + timedelta(hours=6), start + timedelta(hours=6), 10) == []


def test_min_interval_seconds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert CronSchedule.parse("*/7 * * * *").min_interval_seconds(now) == 240.0  # :56 -> :00
    assert CronSchedule.parse("0 9 * * *").min_interval_seconds(now) == 86400.0
    assert CronSchedule.parse("0 9 * * *").min_interval_seconds(now, horizon_fires=1) is None


def test_day_names_month_names_case_and_sunday() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = CronSchedule.parse("0 0 * jan-Mar mon,WED").next_n(start, 30)
    b = CronSchedule.parse("0 0 * 1-3 1,3").next_n(start, 30)
    assert a == b
    assert CronSchedule.parse("0 0 * * 7").next_n(start, 10) == CronSchedule.parse("0 0 * * 0").next_n(start, 10)
    assert CronSchedule.parse("0 0 * * sun").next_n(start, 3)[0] == datetime(2026, 1, 4, tzinfo=UTC)


def test_dom_dow_or_when_both_restricted_and_when_one_is_star() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday
    # both restricted: the 13th OR any Friday
    ored = CronSchedule.parse("0 0 13 * 5").next_n(start, 3)
    assert [t.day for t in ored] == [2, 9, 13]
    # day-of-month starts with '*': AND -> Fridays that are on odd days
    anded = CronSchedule.parse("0 0 */2 * 5").next_n(start, 3)
    assert [(t.month, t.day) for t in anded] == [(1, 9), (1, 23), (2, 13)]


@pytest.mark.parametrize(
    "alias, explicit",
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_aliases(alias: str, explicit: str) -> None:
    start = datetime(2026, 5, 17, 13, 7, tzinfo=UTC)
    assert CronSchedule.parse(alias).next_n(start, 5) == CronSchedule.parse(explicit).next_n(start, 5)


def test_alias_is_never_hashed() -> None:
    s = CronSchedule.parse("@daily", "UTC", hash_id="agent-123")
    assert not s.has_hash
    assert s.hash_id is None
    assert s.next_after(datetime(2026, 1, 1, 5, tzinfo=UTC)) == datetime(2026, 1, 2, tzinfo=UTC)
    s = CronSchedule.parse("@hourly", "UTC", hash_id="agent-123")
    assert s.next_after(datetime(2026, 1, 1, 5, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 6, tzinfo=UTC)


# ---------------------------------------------------------------- H tokens


def test_hash_is_stable_per_id() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = CronSchedule.parse("H H * * *", "UTC", "agent-1")
    b = CronSchedule.parse("H H * * *", "UTC", "agent-1")
    assert a == b and a.has_hash and a.hash_id == "agent-1"
    assert a.next_n(start, 3) == b.next_n(start, 3)
    c = CronSchedule.parse("H H * * *", "UTC", "agent-2")
    assert c != a


def test_hash_spreads_ids() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    minutes = {CronSchedule.parse("H * * * *", "UTC", f"agent-{i}").next_after(start).minute for i in range(100)}
    assert len(minutes) >= 30
    hours = {CronSchedule.parse("0 H * * *", "UTC", f"agent-{i}").next_after(start).hour for i in range(100)}
    assert len(hours) >= 12


def test_hash_matches_croniter_hash_id() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(20):
        agent = f"agent-{i}"
        ours = CronSchedule.parse("H H * * *", "UTC", agent).next_n(start, 3)
        theirs = croniter("H H * * *", start, hash_id=agent)
        assert ours == [theirs.get_next(datetime) for _ in range(3)]


@pytest.mark.parametrize(
    "expr, lo, hi, per_hour, spacing",
    [
        ("H(0-5) * * * *", 0, 5, 1, None),
        ("H(0-29)/10 * * * *", 0, 29, 3, 600),
        ("H/15 * * * *", 0, 59, 4, 900),
        ("H(30-59) * * * *", 30, 59, 1, None),
    ],
)
def test_hash_ranges_and_steps(expr: str, lo: int, hi: int, per_hour: int, spacing: int | None) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(60):
        s = CronSchedule.parse(expr, "UTC", f"id-{i}")
        fires = s.between(start - timedelta(seconds=1), start + timedelta(minutes=59, seconds=59), 100)
        assert len(fires) == per_hour, (expr, fires)
        assert all(lo <= t.minute <= hi for t in fires)
        if spacing:
            assert s.min_interval_seconds(start, 20) == spacing


def test_hash_in_day_of_month_stays_in_1_to_28() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    days = {CronSchedule.parse("0 0 H * *", "UTC", f"a{i}").next_after(start).day for i in range(200)}
    assert max(days) <= 28 and len(days) > 10


def test_hash_without_id_uses_default_seed() -> None:
    s = CronSchedule.parse("H H * * *")
    assert s.has_hash and s.hash_id == "default"
    assert s == CronSchedule.parse("H H * * *", hash_id="default")
    # lower case h works too
    assert CronSchedule.parse("h h * * *", hash_id="x").next_after(datetime(2026, 1, 1, tzinfo=UTC)) == (
        CronSchedule.parse("H H * * *", hash_id="x").next_after(datetime(2026, 1, 1, tzinfo=UTC))
    )


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "expr, words",
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("* * * *", ["5 fields", "got 4"]),
        ("0 * * * * *", ["5 fields", "got 6"]),
        ("0 0 * * * * 2030", ["5 fields", "got 7"]),
        ("garbage", ["5 fields"]),
        ("60 * * * *", ["minute", "60", "out of range"]),
        ("* 24 * * *", ["hour", "24", "out of range"]),
        ("* * 0 * *", ["day-of-month", "0", "out of range"]),
        ("* * 32 * *", ["day-of-month", "32"]),
        ("* * * 13 *", ["month", "13", "out of range"]),
        ("* * * 0 *", ["month", "0"]),
        ("* * * * 8", ["day-of-week", "8", "out of range"]),
        ("5-1 * * * *", ["minute", "range start 5 is above end 1"]),
        ("* * * * FRI-MON", ["day-of-week", "above"]),
        ("*/0 * * * *", ["minute", "step"]),
        ("* */0 * * *", ["hour", "step"]),
        ("*/-1 * * * *", ["minute", "step"]),
        ("*/x * * * *", ["minute", "step"]),
        ("a * * * *", ["minute", "'A' is not a number"]),
        ("* MON * * *", ["hour"]),
        ("* * * FOO *", ["month", "FOO"]),
        ("* * * * FUNDAY", ["day-of-week"]),
        ("1,,2 * * * *", ["minute", "empty"]),
        ("1- * * * *", ["minute", "missing"]),
        ("* * 31 2 *", ["day-of-month", "never"]),
        ("0 0 30 2 *", ["day-of-month", "never"]),
        ("0 0 31 4,6,9,11 *", ["day-of-month", "never"]),
        ("* * L * *", ["day-of-month", "not supported"]),
        ("* * 15W * *", ["day-of-month", "not supported"]),
        ("* * * * 1#2", ["day-of-week", "not supported"]),
        ("* * ? * *", ["day-of-month", "not supported"]),
        ("R * * * *", ["minute", "not supported"]),
        ("H(5-1) * * * *", ["minute", "above"]),
        ("H(0-60) * * * *", ["minute", "60"]),
        ("H/0 * * * *", ["minute", "step"]),
        ("Hx * * * *", ["minute", "H"]),
        ("@reboot", ["alias"]),
        ("@every 5m", ["alias"]),
    ],
)
def test_invalid_expressions(expr: str, words: list[str]) -> None:
    with pytest.raises(CronError) as info:
        CronSchedule.parse(expr, "UTC", "agent")
    assert isinstance(info.value, ValueError)
    assert info.value.message == str(info.value)
    for word in words:
        assert word in info.value.message, info.value.message


def test_error_message_format() -> None:
    with pytest.raises(CronError) as info:
        CronSchedule.parse("5-1 * * * *")
    assert info.value.message == "bad minute field '5-1': range start 5 is above end 1"


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 31 2 0",  # OR with a weekday: Sundays in February
        "0 0 29 2 *",  # leap days only
        "0 0 */100,1-7 * MON",
        "00 03 16,30 * *",
        "6/23 * * * *",
        "0 0 1-1 * *",
        "59 23 31 12 *",
        "0 0 * * 0-7",
    ],
)
def test_valid_edge_expressions(expr: str) -> None:
    s = CronSchedule.parse(expr)
    assert s.next_after(datetime(2026, 1, 1, tzinfo=UTC)) > datetime(2026, 1, 1, tzinfo=UTC)


def test_single_value_range_is_one_value() -> None:
    fires = CronSchedule.parse("5-5 * * * *").next_n(datetime(2026, 1, 1, tzinfo=UTC), 3)
    assert [t.minute for t in fires] == [5, 5, 5]


def test_leap_day_fires_every_four_years() -> None:
    fires = CronSchedule.parse("0 0 29 2 *").next_n(datetime(2026, 1, 1, tzinfo=UTC), 3)
    assert [t.year for t in fires] == [2028, 2032, 2036]


# ---------------------------------------------------------------- time zones


@pytest.mark.parametrize("name", ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Etc/GMT+5", "US/Eastern"])
def test_parse_timezone_valid(name: str) -> None:
    assert parse_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    ["Mars/Base", "", "local", "localtime", "../x", "../../etc/passwd", "/etc/localtime", "utc ", "utc",
     "posix/UTC", "right/UTC", "America", "zone.tab", "Factory", None, 5],
)
def test_parse_timezone_invalid(name) -> None:
    with pytest.raises(CronError) as info:
        parse_timezone(name)
    assert "unknown time zone" in info.value.message


def test_unknown_zone_in_schedule() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Base'"):
        CronSchedule.parse("* * * * *", "Mars/Base")


# ----------------------------------------------------------------------- DST


def _fires(expr: str, tz: str, start: str, n: int) -> list[str]:
    return _local(CronSchedule.parse(expr, tz).next_n(datetime.fromisoformat(start), n), tz)


def test_new_york_gap_fixed_time_runs_once_after_gap() -> None:
    assert _fires("30 2 * * *", "America/New_York", "2027-03-13T12:00:00-05:00", 3) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
        "2027-03-16T02:30:00-04:00",
    ]
    # two gap times collapse into one run, and a 03:00 slot is the same run
    assert _fires("0,30 2,3 * * *", "America/New_York", "2027-03-14T00:00:00-05:00", 3) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-14T03:30:00-04:00",
        "2027-03-15T02:00:00-04:00",
    ]


def test_new_york_gap_wildcard_skips() -> None:
    assert _fires("*/30 * * * *", "America/New_York", "2027-03-14T01:40:00-05:00", 2) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-14T03:30:00-04:00",
    ]
    # every minute of 02:xx: none that day
    assert _fires("* 2 * * *", "America/New_York", "2027-03-14T00:00:00-05:00", 1) == ["2027-03-15T02:00:00-04:00"]


def test_new_york_overlap_fixed_time_runs_once() -> None:
    assert _fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00-04:00", 2) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]
    # starting in the second pass, before the repeated 01:30: it already ran
    assert _fires("30 1 * * *", "America/New_York", "2026-11-01T01:10:00-05:00", 1) == ["2026-11-02T01:30:00-05:00"]


def test_new_york_overlap_wildcard_runs_in_both_copies() -> None:
    assert _fires("*/30 * * * *", "America/New_York", "2026-11-01T00:50:00-04:00", 5) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    # from inside the first pass, the second pass comes next
    assert _fires("*/30 * * * *", "America/New_York", "2026-11-01T01:40:00-04:00", 2) == [
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
    ]
    assert _fires("*/30 * * * *", "America/New_York", "2026-11-01T01:10:00-05:00", 2) == [
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_london_gap_and_overlap() -> None:
    # 2027-03-28: 01:00 GMT -> 02:00 BST
    assert _fires("30 1 * * *", "Europe/London", "2027-03-27T12:00:00+00:00", 2) == [
        "2027-03-28T02:00:00+01:00",
        "2027-03-29T01:30:00+01:00",
    ]
    assert _fires("0 * * * *", "Europe/London", "2027-03-28T00:30:00+00:00", 2) == [
        "2027-03-28T02:00:00+01:00",
        "2027-03-28T03:00:00+01:00",
    ]
    # 2026-10-25: 02:00 BST -> 01:00 GMT
    assert _fires("30 1 * * *", "Europe/London", "2026-10-24T12:00:00+01:00", 2) == [
        "2026-10-25T01:30:00+01:00",
        "2026-10-26T01:30:00+00:00",
    ]
    assert _fires("0 * * * *", "Europe/London", "2026-10-25T00:30:00+01:00", 3) == [
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T02:00:00+00:00",
    ]


# ------------------------------------------------------- cronsim cross-check

# Zones whose transitions cronsim handles as Vixie cron does (cronsim mis-steps
# around half-hour shifts such as Australia/Lord_Howe and midnight gaps).
_XCHECK_ZONES = ["UTC", "America/New_York", "Europe/London", "Europe/Riga", "Asia/Kolkata",
                 "Pacific/Chatham", "Australia/Sydney", "America/Los_Angeles"]


def _rand_field(rng: random.Random, lo: int, hi: int, names: list[str] | None = None) -> str:
    k = rng.random()
    if k < 0.3:
        return "*"
    if k < 0.45:
        return f"*/{rng.randint(1, hi - lo + 2)}"
    if k < 0.65:
        return ",".join(map(str, sorted(rng.sample(range(lo, hi + 1), rng.randint(1, 3)))))
    if k < 0.85:
        a = rng.randint(lo, hi - 1)
        b = rng.randint(a + 1, hi)  # cronsim reads 'A-A/S' as 'A/S'; leave that out
        return f"{a}-{b}" + (f"/{rng.randint(1, 5)}" if rng.random() < 0.4 else "")
    if names and rng.random() < 0.5:
        return rng.choice(names)
    return str(rng.randint(lo, hi))


def _rand_expr(rng: random.Random) -> str:
    return " ".join([
        _rand_field(rng, 0, 59),
        _rand_field(rng, 0, 23),
        _rand_field(rng, 1, 31),
        _rand_field(rng, 1, 12, ["JAN", "APR", "NOV"]),
        _rand_field(rng, 0, 7, ["MON", "SAT", "SUN"]),
    ])


def test_cross_check_with_cronsim() -> None:
    rng = random.Random(20260517)
    checked = 0
    for _ in range(600):
        expr, tz = _rand_expr(rng), rng.choice(_XCHECK_ZONES)
        start = datetime(2018, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 12 * 365 * 86400))
        try:
            schedule = CronSchedule.parse(expr, tz)
        except CronError:
            with pytest.raises(CronSimError):
                CronSim(expr, start.astimezone(ZoneInfo(tz)))
            continue
        expected: list[datetime] = []
        try:
            for t in CronSim(expr, start.astimezone(ZoneInfo(tz))):
                if t > start:  # (cronsim may repeat a fixed time already run in an overlap)
                    expected.append(t.astimezone(UTC))
                if len(expected) == 12:
                    break
        except StopIteration:
            pass
        assert schedule.next_n(start, len(expected)) == expected, (expr, tz, start)
        checked += 1
    assert checked > 500


def _transitions(tz: str, year: int) -> list[datetime]:
    zone = ZoneInfo(tz)
    day = datetime(year, 1, 1, tzinfo=UTC)
    out = []
    for _ in range(366):
        nxt = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            out.append(day)
        day = nxt
    return out


def test_cross_check_with_cronsim_around_dst_changes() -> None:
    rng = random.Random(495)
    fixed = ["30 1 * * *", "0 2 * * *", "30 2 * * *", "0,30 1-3 * * *", "45 0-4/2 * * *", "0 1 * * 0", "5 3 * * *"]
    checked = 0
    for tz in ["America/New_York", "Europe/London", "Europe/Riga", "Pacific/Chatham", "Australia/Sydney"]:
        for year in (2021, 2026):
            for change in _transitions(tz, year):
                exprs = fixed + ["*/20 * * * *", "0 * * * *", "* 1 * * *", "15 */2 * * *"] + [_rand_expr(rng) for _ in range(4)]
                for expr in exprs:
                    start = change - timedelta(hours=rng.randint(0, 30), minutes=rng.randint(0, 59))
                    try:
                        schedule = CronSchedule.parse(expr, tz)
                    except CronError:
                        continue
                    expected = []
                    try:
                        for t in CronSim(expr, start.astimezone(ZoneInfo(tz))):
                            expected.append(t.astimezone(UTC))
                            if len(expected) == 30:
                                break
                    except StopIteration:
                        pass
                    assert schedule.next_n(start, len(expected)) == expected, (expr, tz, start)
                    checked += 1
    assert checked > 250


def test_dst_fires_are_increasing_and_strictly_after() -> None:
    rng = random.Random(7)
    for tz in ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "America/Sao_Paulo"]:
        for expr in ["*/20 * * * *", "30 1,2 * * *", "0 0 * * *", "15 */2 * * *", "* 1 * * *", "0 2 * * 0"]:
            s = CronSchedule.parse(expr, tz)
            after = datetime(2018, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 10 * 525600))
            prev = after
            for t in s.next_n(after, 60):
                assert t > prev
                prev = t


# ----------------------------------------------------------------- warnings


def test_warning_for_gap() -> None:
    s = CronSchedule.parse("30 2 * * *", "America/New_York")
    assert schedule_warnings(s, datetime(2026, 6, 1, tzinfo=UTC)) == [
        "02:30 does not exist on 2027-03-14 in America/New_York (DST gap); it runs once at 03:00"
    ]


def test_warning_for_overlap() -> None:
    s = CronSchedule.parse("30 1 * * *", "America/New_York")
    assert schedule_warnings(s, datetime(2026, 6, 1, tzinfo=UTC)) == [
        "01:30 occurs twice on 2026-11-01 in America/New_York (DST overlap); it runs once, at the first"
    ]


def test_warnings_for_london_both_transitions() -> None:
    s = CronSchedule.parse("30 1 * * *", "Europe/London")
    warnings = schedule_warnings(s, datetime(2026, 6, 1, tzinfo=UTC))
    assert len(warnings) == 2
    assert "2026-10-25" in warnings[0] and "twice" in warnings[0]
    assert "2027-03-28" in warnings[1] and "02:00" in warnings[1]


def test_warning_for_runs_closer_than_timeout() -> None:
    s = CronSchedule.parse("* * * * *", "UTC")
    assert schedule_warnings(s, datetime(2026, 6, 1, tzinfo=UTC), timeout_seconds=300) == [
        "runs as close as 60 s apart, less than the agent's timeout of 300 s: runs would overlap"
    ]
    assert schedule_warnings(s, datetime(2026, 6, 1, tzinfo=UTC), timeout_seconds=60) == []


def test_no_warnings() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert schedule_warnings(CronSchedule.parse("0 12 * * *", "America/New_York"), now, 300) == []
    assert schedule_warnings(CronSchedule.parse("30 2 * * *", "UTC"), now) == []
    # every hour is meant to follow the real clock: nothing to say
    assert schedule_warnings(CronSchedule.parse("0 * * * *", "America/New_York"), now) == []
    # the gap day is not a day this job runs
    assert schedule_warnings(CronSchedule.parse("30 2 * * 1-5", "America/New_York"), now) == []
