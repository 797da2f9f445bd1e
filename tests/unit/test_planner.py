"""The tick's pure rules: fire decisions (catch-up, overlap, jitter, window, DST) and admission."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.admission import Candidate, Lease, plan_admission
from chalicelib.domain.backoff import backoff_cap, backoff_delay
from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.ids import jitter_offset, pending_rank, scheduled_session_id
from chalicelib.domain.model import CatchupPolicy, OverlapPolicy, Priority, SkipReason
from chalicelib.domain.schedule import ScheduleSpec, plan_fires


def ts(s: str) -> float:
    return datetime.fromisoformat(s).astimezone(timezone.utc).timestamp()


def plan(expr="* * * * *", tz="UTC", *, next_run, now, active=0, pauses=(), **spec):
    s = ScheduleSpec(cron_expression=expr, timezone=tz, **spec)
    return plan_fires(
        agent_id="ag_1", spec=s, cron=CronSchedule.parse(expr, tz, hash_id="ag_1"),
        next_run_at=ts(next_run), active_runs=active, now=ts(now), lookahead=60, late_tolerance=120,
        paused_periods=pauses,
    )


# --- fires -----------------------------------------------------------------------------
def test_on_time_fire_within_lookahead_runs_once_and_advances():
    p = plan(next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:02+00:00")
    assert [r.fire_at for r in p.runs] == [ts("2026-03-02T12:00:00+00:00")]
    assert p.next_run_at == ts("2026-03-02T12:01:00+00:00")
    assert p.skips == ()


def test_fire_beyond_lookahead_waits():
    p = plan("0 * * * *", next_run="2026-03-02T13:00:00+00:00", now="2026-03-02T12:00:30+00:00")
    assert p.runs == () and p.next_run_at == ts("2026-03-02T13:00:00+00:00")


def test_catchup_latest_runs_only_the_latest_missed_fire_and_records_the_rest():
    p = plan("*/10 * * * *", next_run="2026-03-02T10:00:00+00:00", now="2026-03-02T10:35:00+00:00")
    assert [r.fire_at for r in p.runs] == [ts("2026-03-02T10:30:00+00:00")]
    assert [s.fire_at for s in p.skips] == [ts(f"2026-03-02T10:{m:02d}:00+00:00") for m in (0, 10, 20)]
    assert {s.reason for s in p.skips} == {SkipReason.CATCHUP_WINDOW}
    assert p.next_run_at == ts("2026-03-02T10:40:00+00:00")


def test_catchup_latest_outside_window_runs_nothing():
    p = plan("0 3 * * *", next_run="2026-03-02T03:00:00+00:00", now="2026-03-02T06:00:00+00:00")
    assert p.runs == () and [s.reason for s in p.skips] == [SkipReason.CATCHUP_WINDOW]


def test_catchup_none_and_all():
    none = plan("*/10 * * * *", next_run="2026-03-02T10:00:00+00:00", now="2026-03-02T10:35:00+00:00", catchup=CatchupPolicy.NONE)
    assert none.runs == () and len(none.skips) == 4
    allp = plan("*/10 * * * *", next_run="2026-03-02T10:00:00+00:00", now="2026-03-02T10:35:00+00:00",
                catchup=CatchupPolicy.ALL, overlap_policy=OverlapPolicy.ALLOW)
    assert len(allp.runs) == 4 and allp.skips == ()


def test_missed_fires_in_a_pause_are_skipped_as_paused():
    pauses = [(ts("2026-03-02T09:55:00+00:00"), ts("2026-03-02T10:34:00+00:00"))]
    p = plan("*/10 * * * *", next_run="2026-03-02T10:00:00+00:00", now="2026-03-02T10:35:00+00:00", pauses=pauses)
    assert {s.reason for s in p.skips} == {SkipReason.PAUSED}


def test_long_outage_jumps_instead_of_enumerating():
    p = plan(next_run="2026-01-01T00:00:00+00:00", now="2026-03-02T12:00:00+00:00")
    # the recent fires are on time (the first runs, the others overlap it); the one ahead is judged by the worker
    assert [r.fire_at for r in p.runs] == [ts("2026-03-02T11:58:00+00:00"), ts("2026-03-02T12:01:00+00:00")]
    assert p.skipped_total < 200


def test_overlap_of_a_fire_ahead_is_left_to_the_worker():
    p = plan(next_run="2026-03-02T12:01:00+00:00", now="2026-03-02T12:00:02+00:00", active=1)
    assert len(p.runs) == 1 and p.skips == ()


def test_overlap_skip_queue_one_allow():
    kw = dict(expr="0 * * * *", next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T12:00:01+00:00")
    assert [s.reason for s in plan(active=1, **kw).skips] == [SkipReason.OVERLAP]
    assert len(plan(active=1, overlap_policy=OverlapPolicy.QUEUE_ONE, **kw).runs) == 1
    assert plan(active=2, overlap_policy=OverlapPolicy.QUEUE_ONE, **kw).runs == ()
    assert len(plan(active=9, overlap_policy=OverlapPolicy.ALLOW, **kw).runs) == 1


def test_start_and_end_window():
    p = plan(next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:30+00:00", end_at=ts("2026-03-02T11:00:00+00:00"))
    assert p.runs == () and p.next_run_at is None
    p = plan(next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:30+00:00", start_at=ts("2026-03-02T12:30:00+00:00"))
    assert p.runs == () and [s.reason for s in p.skips] == [SkipReason.OUTSIDE_WINDOW]


def test_jitter_is_deterministic_and_bounded():
    fire = ts("2026-03-02T12:00:00+00:00")
    offsets = {jitter_offset(f"ag_{i}", fire, 30) for i in range(200)}
    assert offsets <= set(range(31)) and len(offsets) > 10
    assert jitter_offset("ag_1", fire, 30) == jitter_offset("ag_1", fire, 30)
    p = plan(next_run="2026-03-02T12:00:00+00:00", now="2026-03-02T11:59:30+00:00", jitter_seconds=20)
    assert p.runs[0].scheduled_for == fire + jitter_offset("ag_1", fire, 20)


def test_schedule_across_spring_forward_runs_once_after_the_gap():
    # 02:30 does not exist in New York on 2026-03-08: it runs once, at 03:00 EDT (07:00Z).
    p = plan("30 2 * * *", "America/New_York", next_run="2026-03-08T03:00:00-04:00", now="2026-03-08T02:59:30-04:00")
    assert [r.fire_at for r in p.runs] == [ts("2026-03-08T03:00:00-04:00")]
    assert p.next_run_at == ts("2026-03-09T02:30:00-04:00")


def test_session_id_derives_from_agent_and_fire():
    assert scheduled_session_id("a", 100.0) == scheduled_session_id("a", 100.0)
    assert scheduled_session_id("a", 100.0) != scheduled_session_id("b", 100.0)
    assert scheduled_session_id("a", 100.0) != scheduled_session_id("a", 160.0)


# --- admission ---------------------------------------------------------------------------
NOW = ts("2026-03-02T12:00:00+00:00")


def cand(sid, prio, at=NOW, timeout=60):
    return Candidate(sid, "t", "a-" + sid, Priority(prio), at, timeout)


def test_priority_then_time_then_id_under_the_cap():
    cs = [cand("n1", "NORMAL"), cand("l1", "LOW"), cand("c1", "CRITICAL", NOW + 5), cand("h2", "HIGH", NOW + 1), cand("h1", "HIGH")]
    p = plan_admission(cs, [], cap=3, now=NOW, lookahead=60, lease_margin=60)
    assert [a.candidate.session_id for a in p.admit] == ["c1", "h1", "h2"]
    assert [c.session_id for c in p.waiting] == ["n1", "l1"]


def test_live_leases_count_against_the_cap_and_expired_ones_do_not():
    live = Lease("x", "t", "a", NOW, NOW + 10)
    dead = Lease("y", "t", "a", NOW, NOW - 1)
    p = plan_admission([cand("a", "NORMAL"), cand("b", "NORMAL")], [live, dead], cap=2, now=NOW, lookahead=60, lease_margin=60)
    assert [a.candidate.session_id for a in p.admit] == ["a"] and p.expired == ("y",)


def test_delay_is_whole_seconds_until_the_run_and_lease_covers_the_run():
    p = plan_admission([cand("a", "NORMAL", NOW + 42.7, timeout=300)], [], cap=1, now=NOW, lookahead=60, lease_margin=60)
    a = p.admit[0]
    assert a.delay_seconds == 41  # whole seconds, one second of slack: the worker waits out the rest
    assert a.lease.expires_at == NOW + 42.7 + 300 + 60


def test_runs_beyond_lookahead_and_paused_scheduler_admit_nothing():
    assert plan_admission([cand("a", "CRITICAL", NOW + 61)], [], cap=5, now=NOW, lookahead=60, lease_margin=60).admit == ()
    assert plan_admission([cand("a", "CRITICAL")], [], cap=5, now=NOW, lookahead=60, lease_margin=60, paused=True).admit == ()


def test_a_held_run_is_not_admitted_twice():
    held = Lease("a", "t", "a-a", NOW, NOW + 100)
    assert plan_admission([cand("a", "HIGH")], [held], cap=5, now=NOW, lookahead=60, lease_margin=60).admit == ()


def test_pending_rank_sorts_in_admission_order():
    ranks = [pending_rank(Priority(p).rank, t, sid) for p, t, sid in
             [("LOW", 1, "a"), ("CRITICAL", 5, "b"), ("CRITICAL", 2, "c"), ("NORMAL", 0, "d")]]
    assert [r.rsplit("#", 1)[1] for r in sorted(ranks)] == ["c", "b", "d", "a"]


# --- backoff -------------------------------------------------------------------------------
def test_backoff_grows_exponentially_with_a_cap_and_full_jitter():
    assert [backoff_cap(n, 1, 300) for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 8, 300]
    assert backoff_delay(3, 1, 300, rand=lambda: 0.5) == 2
    assert backoff_delay(3, 1, 300, rand=lambda: 0.0) == 0
    assert backoff_delay(1, 1, 300, retry_after=7, rand=lambda: 0.1) == 7
    assert backoff_delay(1, 1, 300, retry_after=7000, rand=lambda: 0.1) == 300


def test_an_on_time_fire_supersedes_the_catch_up_run():
    p = plan("*/5 * * * *", next_run="2026-03-02T12:35:00+00:00", now="2026-03-02T12:40:00+00:00",
             pauses=[(ts("2026-03-02T12:30:00+00:00"), ts("2026-03-02T12:39:59+00:00"))])
    assert [r.fire_at for r in p.runs] == [ts("2026-03-02T12:40:00+00:00")]
    assert [(s.fire_at, s.reason) for s in p.skips] == [(ts("2026-03-02T12:35:00+00:00"), SkipReason.PAUSED)]


def test_delay_counts_from_when_each_batch_is_sent():
    from chalicelib.adapters.queues import OutMessage

    m = OutMessage("s", {}, delay_seconds=41, deliver_at=NOW + 41.7)
    assert m.delay(NOW) == 41
    assert m.delay(NOW + 3.2) == 38, "a batch sent 3.2 s into a long tick waits 3 s less"
    assert m.delay(NOW + 100) == 0
    assert m.delay(None) == 41


# --- jitter: judged by the jittered time -------------------------------------------------
def test_a_large_jitter_is_on_time_when_the_tick_reaches_its_jittered_second():
    fire = ts("2026-03-02T12:00:00+00:00")
    off = jitter_offset("ag_1", fire, 3000)
    assert off > 300  # this fire's jitter is far beyond the late tolerance
    now = fire + off - 30  # the tick that finds it due (due_at = fire + jitter)
    p = plan("0 * * * *", next_run="2026-03-02T12:00:00+00:00", now=datetime.fromtimestamp(now, timezone.utc).isoformat(),
             jitter_seconds=3000, catchup=CatchupPolicy.NONE)
    assert [(r.fire_at, r.scheduled_for) for r in p.runs] == [(fire, fire + off)]
    assert p.skips == ()


def test_a_jittered_fire_missed_by_more_than_the_tolerance_is_missed():
    fire = ts("2026-03-02T12:00:00+00:00")
    off = jitter_offset("ag_1", fire, 3000)
    now = fire + off + 400
    p = plan("0 * * * *", next_run="2026-03-02T12:00:00+00:00", now=datetime.fromtimestamp(now, timezone.utc).isoformat(),
             jitter_seconds=3000, catchup=CatchupPolicy.NONE)
    assert p.runs == () and [s.reason for s in p.skips] == [SkipReason.CATCHUP_WINDOW]


# --- backfill waits behind live runs of its priority ----------------------------------------
def test_a_backfill_run_waits_behind_live_runs_of_its_priority_but_not_lower_ones():
    t = ts("2026-03-02T12:00:00+00:00")
    old = Candidate("b1", "t", "a", Priority.NORMAL, t - 86400, 60, backfill=True)
    live = Candidate("l1", "t", "a", Priority.NORMAL, t + 10, 60)
    low = Candidate("x1", "t", "a", Priority.LOW, t - 100, 60)
    p = plan_admission([old, low, live], [], cap=1, now=t, lookahead=75, lease_margin=60)
    assert [a.candidate.session_id for a in p.admit] == ["l1"]
    assert [c.session_id for c in p.waiting] == ["b1", "x1"]
    # the stored pending order says the same
    ranks = sorted([pending_rank(2, t - 86400, "b1", backfill=True), pending_rank(2, t + 10, "l1"),
                    pending_rank(3, t - 100, "x1"), pending_rank(1, t + 500, "h1")])
    assert [r.rsplit("#", 1)[1] for r in ranks] == ["h1", "l1", "b1", "x1"]
