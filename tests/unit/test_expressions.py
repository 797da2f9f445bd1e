"""Expressions beyond cron (rate(), at()), excluded dates and the jitter bound. Pure."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.cron import CronError
from chalicelib.domain.expressions import (
    AtFires,
    CronFires,
    ExcludedDates,
    RateFires,
    fire_times_for,
    parse_exclude_dates,
    parse_expression,
)
from chalicelib.domain.ids import jitter_offset
from chalicelib.domain.model import CatchupPolicy, SkipReason
from chalicelib.domain.schedule import ScheduleSpec, plan_fires

UTC = timezone.utc


def ts(s: str) -> float:
    return datetime.fromisoformat(s).astimezone(UTC).timestamp()


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


def iso_list(times) -> list[str]:
    return [t.astimezone(UTC).isoformat() for t in times]


# --- rate() -------------------------------------------------------------------------------------
def test_rate_fires_at_anchor_plus_whole_periods():
    r = parse_expression("rate(15 minutes)", anchor=ts("2026-03-02T12:07:00+00:00"))
    assert isinstance(r, RateFires) and r.expression == "rate(15 minutes)" and r.period == 900
    assert iso_list(r.next_n(dt("2026-03-02T12:07:00+00:00"), 3)) == [
        "2026-03-02T12:22:00+00:00", "2026-03-02T12:37:00+00:00", "2026-03-02T12:52:00+00:00"]
    # before the anchor the first fire is the anchor itself; a fire is never at or before `after`
    assert r.next_after(dt("2026-03-02T11:00:00+00:00")) == dt("2026-03-02T12:07:00+00:00")
    assert r.next_after(dt("2026-03-02T12:22:00+00:00")) == dt("2026-03-02T12:37:00+00:00")


@pytest.mark.parametrize("text,canonical,period", [
    ("rate(1 minute)", "rate(1 minute)", 60),
    ("RATE( 2 Hours )", "rate(2 hours)", 7200),
    ("rate(1 day)", "rate(1 day)", 86400),
    ("rate(3 days)", "rate(3 days)", 259200),
])
def test_rate_forms(text, canonical, period):
    r = parse_expression(text, anchor=0.0)
    assert (r.expression, r.period, r.min_interval_seconds(dt("2026-01-01T00:00:00+00:00"))) == (canonical, period, period)


@pytest.mark.parametrize("text,words", [
    ("rate(0 minutes)", "at least 1"),
    ("rate(5 weeks)", "unit"),
    ("rate(5)", "not a rate"),
    ("rate(-1 minutes)", "not a rate"),
    ("rate(367 days)", "366 days"),
])
def test_bad_rates_say_what_is_wrong(text, words):
    with pytest.raises(CronError) as e:
        parse_expression(text, anchor=0.0)
    assert words in e.value.message


def test_rate_one_day_is_24_hours_across_a_dst_change_and_warns():
    # New York springs forward on 2026-03-08: a daily rate anchored at 09:00 EST fires at 10:00 EDT after it.
    r = parse_expression("rate(1 day)", "America/New_York", anchor=ts("2026-03-06T09:00:00-05:00"))
    fires = r.next_n(dt("2026-03-06T09:00:00-05:00"), 3)
    assert [f.astimezone(r.zone).strftime("%m-%d %H:%M") for f in fires] == ["03-07 09:00", "03-08 10:00", "03-09 10:00"]
    assert all((b - a).total_seconds() == 86400 for a, b in zip(fires, fires[1:]))
    [w] = r.warnings(dt("2026-03-06T09:00:00-05:00"))
    assert "2026-03-08" in w and "wall time" in w
    assert parse_expression("rate(1 day)", "UTC", anchor=0.0).warnings(dt("2026-03-06T09:00:00+00:00")) == []
    assert parse_expression("rate(5 minutes)", "America/New_York", anchor=0.0).warnings(dt("2026-03-06T09:00:00+00:00")) == []


# --- at() ---------------------------------------------------------------------------------------
def test_at_fires_once_at_the_wall_time_in_the_zone():
    a = parse_expression("at(2026-07-01T09:30:00)", "Europe/Paris")
    assert isinstance(a, AtFires) and a.expression == "at(2026-07-01T09:30:00)"
    assert a.fire_at == ts("2026-07-01T09:30:00+02:00")
    assert a.next_after(dt("2026-06-01T00:00:00+00:00")) == dt("2026-07-01T07:30:00+00:00")
    assert a.next_after(dt("2026-07-01T07:30:00+00:00")) is None  # after it fired: nothing
    assert list(a.iter_after(dt("2026-06-01T00:00:00+00:00"))) == [dt("2026-07-01T07:30:00+00:00")]
    assert a.min_interval_seconds(dt("2026-06-01T00:00:00+00:00")) is None


def test_at_in_a_dst_gap_is_refused_and_in_an_overlap_is_the_first():
    with pytest.raises(CronError) as e:
        parse_expression("at(2026-03-08T02:30:00)", "America/New_York")
    assert "does not exist" in e.value.message
    a = parse_expression("at(2026-11-01T01:30:00)", "America/New_York")
    assert a.fire_at == ts("2026-11-01T01:30:00-04:00")  # EDT, the first of the two


@pytest.mark.parametrize("text", ["at(2026-02-30T10:00:00)", "at(2026-01-01 10:00:00)", "at(2026-01-01T10:00)", "at()"])
def test_bad_at_times_are_refused(text):
    with pytest.raises(CronError):
        parse_expression(text)


def test_cron_still_parses_and_unknown_zones_are_refused():
    c = parse_expression("H 9 * * MON-FRI", "Europe/Paris", hash_id="ag_1")
    assert isinstance(c, CronFires) and c.hash_id == "ag_1"
    with pytest.raises(CronError):
        parse_expression("rate(5 minutes)", "Mars/Base", anchor=0.0)


def test_a_stored_rate_counts_from_its_anchor_else_startat_else_its_creation():
    spec = ScheduleSpec("rate(10 minutes)", anchor_at=ts("2026-03-02T12:03:00+00:00"))
    assert fire_times_for(spec, "ag").next_after(dt("2026-03-02T12:05:00+00:00")) == dt("2026-03-02T12:13:00+00:00")
    legacy = ScheduleSpec("rate(10 minutes)", created_at=ts("2026-03-02T12:01:00+00:00"))
    assert fire_times_for(legacy, "ag").next_after(dt("2026-03-02T12:05:00+00:00")) == dt("2026-03-02T12:11:00+00:00")


# --- excluded dates -----------------------------------------------------------------------------
def test_exclude_dates_are_checked_sorted_and_deduplicated():
    assert parse_exclude_dates(["2026-12-25", "2026-01-01", "2026-12-25"]) == ("2026-01-01", "2026-12-25")
    for bad in (["2026-13-01"], ["26-01-01"], [20260101]):
        with pytest.raises(CronError) as e:
            parse_exclude_dates(bad)
        assert "excludeDates[0]" in e.value.message


def test_excluded_local_dates_are_jumped_in_the_schedules_zone():
    tz = "Asia/Tokyo"
    cron = parse_expression("0 * * * *", tz)
    ex = ExcludedDates.of(["2026-03-03"], tz)
    # 2026-03-02T23:00 Tokyo, then the whole 3rd (Tokyo) is left out: next is 00:00 on the 4th.
    got = list(zip(range(3), ex.included_after(cron, dt("2026-03-02T22:30:00+09:00"))))
    assert [t.isoformat() for _, t in got] == [
        "2026-03-02T14:00:00+00:00", "2026-03-03T15:00:00+00:00", "2026-03-03T16:00:00+00:00"]
    assert ex.excludes(ts("2026-03-02T15:00:00+00:00"))  # 00:00 on the 3rd in Tokyo
    assert not ex.excludes(ts("2026-03-02T14:59:59+00:00"))


def plan(expr, *, next_run, now, agent="ag_1", tz="UTC", **spec):
    s = ScheduleSpec(cron_expression=expr, timezone=tz, **spec)
    return plan_fires(agent_id=agent, spec=s, cron=fire_times_for(s, agent), next_run_at=ts(next_run),
                      active_runs=0, now=ts(now), lookahead=75, late_tolerance=150)


def test_the_tick_skips_an_excluded_dates_fire_and_records_why():
    p = plan("0 12 * * *", next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:30+00:00",
             exclude_dates=("2026-03-02",))
    assert p.runs == () and [(s.fire_at, s.reason) for s in p.skips] == [(ts("2026-03-02T12:00:00+00:00"), SkipReason.EXCLUDED_DATE)]
    assert p.next_run_at == ts("2026-03-03T12:00:00+00:00")


def test_the_tick_plans_rate_and_at_schedules():
    p = plan("rate(30 minutes)", next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:30+00:00",
             anchor_at=ts("2026-03-02T10:00:00+00:00"))
    assert [r.fire_at for r in p.runs] == [ts("2026-03-02T12:00:00+00:00")]
    assert p.next_run_at == ts("2026-03-02T12:30:00+00:00")
    once = plan("at(2026-03-02T12:00:00)", next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:30+00:00")
    assert [r.fire_at for r in once.runs] == [ts("2026-03-02T12:00:00+00:00")]
    assert once.next_run_at is None and once.next_due_at is None  # it never fires again


def test_a_missed_at_follows_the_catchup_policy():
    late = plan("at(2026-03-02T12:00:00)", next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T12:20:00+00:00")
    assert [r.fire_at for r in late.runs] == [ts("2026-03-02T12:00:00+00:00")] and late.next_run_at is None
    none = plan("at(2026-03-02T12:00:00)", next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T12:20:00+00:00",
                catchup=CatchupPolicy.NONE)
    assert none.runs == () and [s.reason for s in none.skips] == [SkipReason.CATCHUP_WINDOW]


def test_jittered_rate_fires_are_on_time_at_their_jittered_second():
    anchor = ts("2026-03-02T10:00:00+00:00")
    fire = ts("2026-03-02T12:00:00+00:00")
    off = jitter_offset("ag_1", fire, 1800)
    now = datetime.fromtimestamp(fire + off - 30, UTC).isoformat()
    p = plan("rate(1 hour)", next_run="2026-03-02T12:00:00+00:00", now=now, anchor_at=anchor, jitter_seconds=1800,
             catchup=CatchupPolicy.NONE)
    assert [(r.fire_at, r.scheduled_for) for r in p.runs] == [(fire, fire + off)] and p.skips == ()
