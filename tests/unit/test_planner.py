"""The tick's pure rules: fire decisions (catch-up, overlap, jitter, window, DST) and admission."""
from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.domain.admission import SLOT_SHARD_SIZE, Candidate, SlotShard, plan_admission, slot_limits
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


def shards(cap, used=()):
    return [SlotShard(name, (list(used) + [0] * 99)[k], limit) for k, (name, limit) in enumerate(slot_limits(cap))]


def admit_plan(cs, cap, used=(), **kw):
    return plan_admission(cs, shards(cap, used), now=NOW, lookahead=60, claim_grace=30, **kw)


def test_priority_then_time_then_id_under_the_cap():
    cs = [cand("n1", "NORMAL"), cand("l1", "LOW"), cand("c1", "CRITICAL", NOW + 5), cand("h2", "HIGH", NOW + 1), cand("h1", "HIGH")]
    p = admit_plan(cs, 3)
    assert [a.candidate.session_id for a in p.admit] == ["c1", "h1", "h2"]
    assert [c.session_id for c in p.waiting] == ["n1", "l1"]
    assert p.blocked


def test_held_slots_count_against_the_cap():
    p = admit_plan([cand("a", "NORMAL"), cand("b", "NORMAL")], 2, used=[1])
    assert [a.candidate.session_id for a in p.admit] == ["a"] and p.free_slots == 1


def test_slot_shards_stay_small_and_add_up_to_the_cap():
    for cap in (1, 5, 100, 101, 999, 1000):
        limits = slot_limits(cap)
        assert sum(n for _, n in limits) == cap
        assert max(n for _, n in limits) <= SLOT_SHARD_SIZE
        assert max(n for _, n in limits) - min(n for _, n in limits) <= 1
    assert len(slot_limits(5)) == 1 and len(slot_limits(1000)) == 10


def test_admits_spread_over_the_shards_with_most_room_and_never_past_a_shard():
    p = admit_plan([cand(f"r{i:03d}", "NORMAL") for i in range(250)], 300, used=[95, 0, 50])
    per = {k: len(v) for k, v in p.by_shard().items()}
    assert per == {"s000": 5, "s001": 100, "s002": 50} or sum(per.values()) == 155
    assert all(per[s.name] <= s.free for s in shards(300, [95, 0, 50]))


def test_delay_is_whole_seconds_until_the_run_and_the_claim_lease_follows_it():
    p = admit_plan([cand("a", "NORMAL", NOW + 42.7, timeout=300)], 1)
    a = p.admit[0]
    assert a.delay_seconds == 41  # whole seconds, one second of slack: the worker waits out the rest
    assert a.lease_until == NOW + 42.7 + 30  # not claimed by then: sent again


def test_runs_beyond_lookahead_and_paused_scheduler_admit_nothing():
    assert admit_plan([cand("a", "CRITICAL", NOW + 61)], 5).admit == ()
    assert admit_plan([cand("a", "CRITICAL")], 5, paused=True).admit == ()


def test_duplicate_candidates_are_admitted_once():
    assert len(admit_plan([cand("a", "HIGH"), cand("a", "HIGH")], 5).admit) == 1


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
    p = plan_admission([old, low, live], [SlotShard("s000", 0, 1)], now=t, lookahead=75, claim_grace=30)
    assert [a.candidate.session_id for a in p.admit] == ["l1"]
    assert [c.session_id for c in p.waiting] == ["b1", "x1"]
    # the stored pending order says the same
    ranks = sorted([pending_rank(2, t - 86400, "b1", backfill=True), pending_rank(2, t + 10, "l1"),
                    pending_rank(3, t - 100, "x1"), pending_rank(1, t + 500, "h1")])
    assert [r.rsplit("#", 1)[1] for r in ranks] == ["h1", "l1", "b1", "x1"]
