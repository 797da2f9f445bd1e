"""Pure rules of flow control and brakes: rate-limited waits, usage, budget days, pausedUntil,
the consecutive-failure pause."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.brakes import pause_for_failures, paused_at
from chalicelib.domain.budget import (
    Budget,
    DayUsage,
    OnExhausted,
    budget_day,
    charge_for,
    day_end,
    exhausted,
    fire_blocked,
    parse_budget,
    parse_usage,
    reported_usage,
)
from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.expressions import CronFires
from chalicelib.domain.model import ErrorCategory, SkipReason
from chalicelib.domain.runflow import Backoff, Next, after_attempt, waiting_rate_limited
from chalicelib.domain.schedule import ScheduleSpec, plan_fires
from chalicelib.errors import ValidationError
from chalicelib.services.agents import upcoming_fires

NOW = 1_000_000.0
BACKOFF = Backoff(1.0, 300.0, lambda: 0.5)


def ts(s: str) -> float:
    return datetime.fromisoformat(s).astimezone(timezone.utc).timestamp()


def end(category, *, attempt, waits=0, max_waits=3, max_attempts=2, retry_after=None, cancel=False):
    return after_attempt(ok=False, category=category, message="HTTP 429", output=None, retry_after=retry_after,
                         attempt=attempt, max_attempts=max_attempts, cancel_requested=cancel, now=NOW,
                         backoff=BACKOFF, rate_limited_waits=waits, max_rate_limited_waits=max_waits)


# --- rate-limited waits ----------------------------------------------------------------------
@pytest.mark.parametrize("attempt,waits,retry_after,expect_next,expect_wait,expect_delay,expect_category", [
    # a 429 waits Retry-After and uses no retry, even on the run's last allowed attempt
    (1, 0, 7.0, Next.RETRY, True, 7.0, "RATE_LIMITED"),
    (2, 0, 7.0, Next.RETRY, True, 7.0, "RATE_LIMITED"),
    (4, 2, None, Next.RETRY, True, 0.5 * 4.0, "RATE_LIMITED"),  # no Retry-After: the backoff of wait 3
    (1, 0, 10_000.0, Next.RETRY, True, 300.0, "RATE_LIMITED"),  # capped at the backoff's maximum
    # waits used up: it counts as TRANSIENT (a retry while retries are left, else DEAD)
    (4, 3, 5.0, Next.RETRY, False, 5.0, "TRANSIENT"),
    (5, 3, 5.0, Next.DEAD, False, None, "TRANSIENT"),
])
def test_rate_limited_table(attempt, waits, retry_after, expect_next, expect_wait, expect_delay, expect_category):
    t = end(ErrorCategory.RATE_LIMITED, attempt=attempt, waits=waits, retry_after=retry_after)
    assert t.next is expect_next
    assert t.rate_limited_wait is expect_wait
    assert t.error["category"] == expect_category
    if expect_delay is None:
        assert t.next_attempt_at is None
    else:
        assert t.next_attempt_at - NOW == pytest.approx(expect_delay)


def test_waits_do_not_use_retries_of_later_real_failures():
    # maxRetries 1 (2 attempts): two 429 waits, then a TRANSIENT failure still has its one retry
    assert end(ErrorCategory.TRANSIENT, attempt=3, waits=2).next is Next.RETRY
    assert end(ErrorCategory.TRANSIENT, attempt=4, waits=2).next is Next.DEAD
    # without the waits counted, attempt 3 of 2 would be dead
    assert end(ErrorCategory.TRANSIENT, attempt=3, waits=0).next is Next.DEAD


def test_no_waits_allowed_means_transient_at_once():
    t = end(ErrorCategory.RATE_LIMITED, attempt=1, max_waits=0, retry_after=4.0)
    assert t.next is Next.RETRY and not t.rate_limited_wait and t.error["category"] == "TRANSIENT"
    assert "rate limited" in t.error["message"]


def test_cancel_beats_a_rate_limited_wait():
    t = end(ErrorCategory.RATE_LIMITED, attempt=1, cancel=True)
    assert t.next is Next.CANCELLED and not t.rate_limited_wait


def test_usage_travels_with_every_outcome():
    u = {"inputTokens": 3}
    ok = after_attempt(ok=True, category=None, message=None, output=1, retry_after=None, attempt=1, max_attempts=1,
                       cancel_requested=False, now=NOW, backoff=BACKOFF, usage=u)
    assert ok.usage == u


@pytest.mark.parametrize("status,stage,error,expect", [
    ("RETRYING", "PENDING", {"category": "RATE_LIMITED"}, True),
    ("RETRYING", "ADMITTED", {"category": "RATE_LIMITED"}, True),
    ("RETRYING", "PENDING", {"category": "TRANSIENT"}, False),
    ("RUNNING", None, {"category": "RATE_LIMITED"}, False),
    ("QUEUED", "PENDING", None, False),
])
def test_waiting_rate_limited(status, stage, error, expect):
    assert waiting_rate_limited(status, stage, error) is expect


# --- usage -------------------------------------------------------------------------------------
def test_usage_is_checked_and_named():
    assert parse_usage({"inputTokens": 10, "outputTokens": 2, "costUsd": 0.25}) == {
        "inputTokens": 10, "outputTokens": 2, "costUsd": 0.25}
    assert parse_usage(None) is None
    for bad, field in [({"inputTokens": -1}, "config.usage.inputTokens"), ({"costUsd": "1"}, "config.usage.costUsd"),
                       ({"tokens": 1}, "config.usage.tokens"), ([1], "config.usage"),
                       ({"outputTokens": True}, "config.usage.outputTokens"),
                       ({"costUsd": float("inf")}, "config.usage.costUsd")]:
        with pytest.raises(ValidationError) as e:
            parse_usage(bad, "config.usage")
        assert e.value.field == field


def test_reported_usage_ignores_what_is_not_usage():
    assert reported_usage({"costUsd": 1}) == {"costUsd": 1.0}
    assert reported_usage("lots") is None and reported_usage({}) is None and reported_usage({"x": 1}) is None


# --- budgets -------------------------------------------------------------------------------------
def test_budget_fields_are_bounded_and_named():
    b = parse_budget({"maxRunsPerDay": 3, "timezone": "Europe/Paris", "onExhausted": "PAUSE"})
    assert b == Budget(3, None, None, "Europe/Paris", OnExhausted.PAUSE)
    assert parse_budget(None) is None
    for bad, field in [({}, "budget"), ({"timezone": "UTC"}, "budget"),
                       ({"maxRunsPerDay": 0}, "budget.maxRunsPerDay"),
                       ({"maxCostUsdPerDay": 0}, "budget.maxCostUsdPerDay"),
                       ({"maxRunsPerDay": 1, "timezone": "Mars/Olympus"}, "budget.timezone"),
                       ({"maxRunsPerDay": 1, "onExhausted": "STOP"}, "budget.onExhausted"),
                       ({"maxRunsPerDay": 1, "perHour": 1}, "budget.perHour"), ("x", "budget")]:
        with pytest.raises(ValidationError) as e:
            parse_budget(bad)
        assert e.value.field == field


@pytest.mark.parametrize("instant,tz,day", [
    ("2026-03-02T22:59:59+00:00", "Europe/Paris", "2026-03-02"),
    ("2026-03-02T23:00:00+00:00", "Europe/Paris", "2026-03-03"),  # local midnight (UTC+1)
    ("2026-03-03T04:59:59+00:00", "America/New_York", "2026-03-02"),
    ("2026-03-03T05:00:00+00:00", "America/New_York", "2026-03-03"),
    ("2026-03-08T04:59:59+00:00", "America/New_York", "2026-03-07"),
    ("2026-03-08T05:00:00+00:00", "America/New_York", "2026-03-08"),  # the day DST starts: 23 hours long
    ("2026-03-08T23:59:59+00:00", "UTC", "2026-03-08"),
])
def test_budget_day_is_the_local_calendar_day(instant, tz, day):
    assert budget_day(ts(instant), tz) == day


def test_day_end_is_the_next_local_midnight_even_across_dst():
    assert day_end("2026-03-02", "Europe/Paris") == ts("2026-03-02T23:00:00+00:00")
    assert day_end("2026-03-08", "America/New_York") == ts("2026-03-09T04:00:00+00:00")  # 23 h day
    assert day_end("2026-03-08", "America/New_York") - ts("2026-03-08T05:00:00+00:00") == 23 * 3600


def test_exhausted_names_the_first_limit_reached():
    b = Budget(max_runs_per_day=3, max_runtime_seconds_per_day=60, max_cost_usd_per_day=1.0)
    assert exhausted(b, DayUsage("d", 2, 59.9, 0.99)) is None
    assert exhausted(b, DayUsage("d", 3, 0, 0)) == "maxRunsPerDay"
    assert exhausted(b, DayUsage("d", 0, 60, 0)) == "maxRuntimeSecondsPerDay"
    assert exhausted(b, DayUsage("d", 0, 0, 0.1 + 0.2 + 0.7)) == "maxCostUsdPerDay"
    assert exhausted(b, None) is None


def test_a_used_up_day_blocks_its_own_later_fires_only():
    b = Budget(max_runs_per_day=1, timezone="Europe/Paris")
    used = DayUsage("2026-03-02", runs=1)
    assert fire_blocked(b, used, ts("2026-03-02T22:59:00+00:00"))  # 23:59 in Paris, same day
    assert not fire_blocked(b, used, ts("2026-03-02T23:00:00+00:00"))  # midnight in Paris: a new day
    assert not fire_blocked(b, DayUsage("2026-03-02", runs=0), ts("2026-03-02T12:00:00+00:00"))
    assert not fire_blocked(None, used, ts("2026-03-02T12:00:00+00:00"))


def test_charge_counts_one_run_at_its_end_runtime_each_attempt_and_cost():
    b = Budget(max_runs_per_day=5, timezone="UTC")
    t = ts("2026-03-02T10:00:00+00:00")
    c = charge_for(b, now=t, final=True, duration_ms=1500, usage={"costUsd": 0.2})
    assert (c.day, c.runs, c.runtime_seconds, c.cost_usd) == ("2026-03-02", 1, 1.5, 0.2)
    assert c.expires_at > day_end("2026-03-02", "UTC")
    retry = charge_for(b, now=t, final=False, duration_ms=1000, usage=None)
    assert (retry.runs, retry.runtime_seconds) == (0, 1.0)
    assert charge_for(b, now=t, final=False, duration_ms=0, usage=None) is None
    assert charge_for(None, now=t, final=True, duration_ms=10, usage=None) is None


# --- pauseAfterFailures --------------------------------------------------------------------------------
@pytest.mark.parametrize("pause_after,failures,enabled,expect", [
    (3, 2, True, False),
    (3, 3, True, True),
    (3, 4, True, True),
    (3, 5, False, False),  # already disabled: nothing to do
    (None, 50, True, False),
    (1, 0, True, False),  # a success reset the count
    (1, 1, True, True),
])
def test_pause_for_failures(pause_after, failures, enabled, expect):
    assert pause_for_failures(pause_after, failures, enabled) is expect


# --- pausedUntil --------------------------------------------------------------------------------------
def test_paused_at():
    assert paused_at(99.0, 100.0) and not paused_at(100.0, 100.0) and not paused_at(5.0, None)


def test_fires_before_paused_until_are_skipped_paused_and_later_ones_run():
    spec = ScheduleSpec(cron_expression="* * * * *", paused_until=ts("2026-03-02T12:01:00+00:00"))
    p = plan_fires(agent_id="ag_1", spec=spec, cron=CronSchedule.parse("* * * * *", "UTC", hash_id="ag_1"),
                   next_run_at=ts("2026-03-02T12:00:00+00:00"), active_runs=0, now=ts("2026-03-02T12:00:30+00:00"),
                   lookahead=60, late_tolerance=120)
    assert [(s.fire_at, s.reason) for s in p.skips] == [(ts("2026-03-02T12:00:00+00:00"), SkipReason.PAUSED)]
    assert [r.fire_at for r in p.runs] == [ts("2026-03-02T12:01:00+00:00")]


def test_next_runs_leave_out_fires_before_paused_until():
    cron = CronSchedule.parse("0 * * * *", "Europe/Paris", hash_id="ag_1")
    spec = ScheduleSpec(cron_expression="0 * * * *", timezone="Europe/Paris",
                        paused_until=ts("2026-03-02T15:30:00+00:00"))
    runs = upcoming_fires(spec, CronFires(cron), ts("2026-03-02T12:00:00+00:00"), 3)
    assert runs == [ts("2026-03-02T16:00:00+00:00"), ts("2026-03-02T17:00:00+00:00"), ts("2026-03-02T18:00:00+00:00")]
    # a pause that has passed changes nothing
    past = ScheduleSpec(cron_expression="0 * * * *", paused_until=ts("2026-03-02T11:00:00+00:00"))
    assert upcoming_fires(past, CronFires(cron), ts("2026-03-02T12:00:00+00:00"), 1) == [ts("2026-03-02T12:00:00+00:00")]


# --- overlap CANCEL_PREVIOUS ------------------------------------------------------------------------------
def test_cancel_previous_never_skips_a_due_fire_for_an_active_run():
    from chalicelib.domain.model import OverlapPolicy

    for policy, runs in ((OverlapPolicy.SKIP, 0), (OverlapPolicy.CANCEL_PREVIOUS, 1)):
        spec = ScheduleSpec(cron_expression="* * * * *", overlap_policy=policy)
        p = plan_fires(agent_id="ag_1", spec=spec, cron=CronSchedule.parse("* * * * *", "UTC", hash_id="ag_1"),
                       next_run_at=ts("2026-03-02T12:00:00+00:00"), active_runs=1,
                       now=ts("2026-03-02T12:00:01+00:00"), lookahead=50, late_tolerance=120)
        assert len(p.runs) == runs, policy
