"""Keyed limits, tenant fairness and aging in admission: pure, with a fixed clock."""
from __future__ import annotations

from chalicelib.domain.admission import (
    Admit,
    Candidate,
    PoolLimit,
    SlotShard,
    Throttle,
    WaitingReason,
    aged_rank,
    agent_key,
    handoff_changes,
    keyed_counters,
    limits_for,
    plan_admission,
    pool_key,
    tenant_key,
    window_key,
)
from chalicelib.domain.model import Priority

NOW = 1_800_000_000.0  # a multiple of 60 and of 3600


def cand(sid, tenant="t1", agent="a1", prio="NORMAL", at=NOW - 10, *, cap=None, mc=None, thr=None, pools=()):
    lims = limits_for(tenant_id=tenant, agent_id=agent, tenant_cap=cap, max_concurrency=mc, throttle=thr,
                      pools=pools)
    return Candidate(sid, tenant, agent, Priority(prio), at, 60, limits=lims)


def plan(cs, free=5, counters=None, **kw):
    return plan_admission(cs, [SlotShard("s000", 0, free)], now=NOW, lookahead=75, claim_grace=30,
                          counters=counters, **kw)


def ids(p):
    return [a.candidate.session_id for a in p.admit]


def test_several_limits_at_once_each_holds_back_its_own_runs():
    pool = PoolLimit("gpu", max_concurrency=1)
    cs = [
        cand("r1", agent="a1", mc=1),  # agent a1 already runs one
        cand("r2", agent="a2", pools=[pool]),  # pool full
        cand("r3", tenant="t2", agent="a3", cap=2),  # tenant t2 at its cap
        cand("r4", agent="a4"),  # nothing holds it
    ]
    counters = {agent_key("t1", "a1"): 1, pool_key("t1", "gpu"): 1, tenant_key("t2"): 2}
    p = plan(cs, counters=counters)
    assert ids(p) == ["r4"]
    assert p.reasons["r1"] == (WaitingReason.AGENT_CONCURRENCY, None)
    assert p.reasons["r2"] == (WaitingReason.POOL_LIMIT, "gpu")
    assert p.reasons["r3"] == (WaitingReason.TENANT_LIMIT, None)


def test_a_blocked_run_does_not_block_the_runs_behind_it_and_order_is_kept():
    cs = [cand("r1", agent="a1", mc=1, at=NOW - 30), cand("r2", agent="a1", mc=1, at=NOW - 20),
          cand("r3", agent="a2", at=NOW - 10), cand("r4", agent="a3", at=NOW - 5)]
    p = plan(cs, free=2, counters={agent_key("t1", "a1"): 1})
    assert ids(p) == ["r3", "r4"]
    assert [c.session_id for c in p.waiting] == ["r1", "r2"]


def test_agent_max_concurrency_counts_runs_admitted_in_the_same_plan():
    cs = [cand(f"r{i}", mc=2) for i in range(5)]
    p = plan(cs, free=5)
    assert len(p.admit) == 2
    assert all(a.holds == (agent_key("t1", "a1"),) for a in p.admit)
    assert p.key_limits[agent_key("t1", "a1")] == 2
    assert {p.reasons[c.session_id][0] for c in p.waiting} == {WaitingReason.AGENT_CONCURRENCY}


def test_the_global_cap_leaves_the_rest_waiting_for_capacity():
    p = plan([cand(f"r{i}", agent=f"a{i}") for i in range(4)], free=2)
    assert len(p.admit) == 2
    assert all(p.reasons[c.session_id] == (WaitingReason.CAPACITY, None) for c in p.waiting)


def test_round_robin_across_tenants_within_one_priority_oldest_first_within_a_tenant():
    backlog = [cand(f"a{i}", tenant="big", agent="x", at=NOW - 100 + i) for i in range(10)]
    other = [cand(f"b{i}", tenant="small", agent="y", at=NOW - 50 + i) for i in range(3)]
    third = [cand("c0", tenant="late", agent="z", at=NOW - 1)]
    p = plan(backlog + other + third, free=6)
    assert ids(p) == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_fairness_counts_what_each_tenant_already_holds():
    cs = [cand("a0", tenant="big", at=NOW - 100), cand("b0", tenant="small", at=NOW - 10),
          cand("b1", tenant="small", at=NOW - 9)]
    p = plan(cs, free=2, counters={tenant_key("big"): 3, tenant_key("small"): 0})
    assert ids(p) == ["b0", "b1"]


def test_priority_between_levels_stays_strict_over_fairness():
    cs = [cand("hi1", tenant="big", prio="HIGH"), cand("hi2", tenant="big", prio="HIGH"),
          cand("n1", tenant="small", prio="NORMAL", at=NOW - 500)]
    p = plan(cs, free=2)
    assert ids(p) == ["hi1", "hi2"]


def test_tenant_cap_skips_the_whole_tenant_and_others_go_on():
    cs = [cand(f"a{i}", tenant="big", cap=2, at=NOW - 100 + i) for i in range(4)] + [
        cand("b0", tenant="small", cap=2, at=NOW - 1)]
    p = plan(cs, free=5, counters={tenant_key("big"): 1})
    assert ids(p) == ["b0", "a0"] or ids(p) == ["a0", "b0"]
    assert {p.reasons[f"a{i}"][0] for i in (1, 2, 3)} == {WaitingReason.TENANT_LIMIT}
    assert p.key_limits[tenant_key("big")] == 2


def test_aging_lifts_one_level_per_period_never_above_high():
    low = cand("low", prio="LOW", at=NOW - 1300)
    assert aged_rank(low, NOW, 600) == Priority.HIGH.rank  # two periods: LOW -> NORMAL -> HIGH
    assert aged_rank(cand("l2", prio="LOW", at=NOW - 700), NOW, 600) == Priority.NORMAL.rank
    assert aged_rank(cand("l3", prio="LOW", at=NOW - 99_999), NOW, 600) == Priority.HIGH.rank
    assert aged_rank(low, NOW, 0) == Priority.LOW.rank  # 0: off
    assert aged_rank(cand("c", prio="CRITICAL", at=NOW - 99_999), NOW, 600) == Priority.CRITICAL.rank


def test_a_backfill_run_does_not_age_it_stays_behind_live_runs_of_higher_priority():
    import dataclasses

    old_backfill = dataclasses.replace(cand("bf", prio="LOW", agent="b", at=NOW - 99_999), backfill=True)
    assert aged_rank(old_backfill, NOW, 600) == Priority.LOW.rank
    cs = [old_backfill, cand("n1", prio="NORMAL", agent="n", at=NOW - 5)]
    assert ids(plan(cs, free=1, aging_seconds=600)) == ["n1"]


def test_an_aged_low_run_goes_before_fresh_normal_runs_but_not_before_critical():
    cs = [cand("crit", prio="CRITICAL", agent="c"), cand("n1", prio="NORMAL", agent="n", at=NOW - 5),
          cand("old", prio="LOW", agent="l", at=NOW - 1300)]
    assert ids(plan(cs, free=2, aging_seconds=600)) == ["crit", "old"]
    assert ids(plan(cs, free=2, aging_seconds=0)) == ["crit", "n1"]


def test_throttle_counts_starts_per_window_and_moves_a_start_to_the_next_window():
    thr = Throttle(limit=2, period_seconds=30)
    cs = [cand(f"r{i}", thr=thr, at=NOW - 10 + i) for i in range(6)]
    p = plan(cs, free=6)
    w0, w1 = window_key(agent_key("t1", "a1"), 30, NOW), window_key(agent_key("t1", "a1"), 30, NOW + 30)
    # two in this window, two in the next (sent with the delay to its start); later windows wait
    assert [a.starts for a in p.admit[:4]] == [(w0,), (w0,), (w1,), (w1,)]
    assert p.admit[2].start_at == NOW + 30 and p.admit[2].delay_seconds == 29
    assert p.admit[0].holds == ()
    assert p.key_expiry[w1] > NOW + 60
    assert len(p.admit) == 4
    assert [c.session_id for c in p.waiting] == ["r4", "r5"]
    assert {p.reasons[s] for s in ("r4", "r5")} == {(WaitingReason.THROTTLED, None)}


def test_throttle_window_full_beyond_the_lookahead_waits():
    thr = Throttle(limit=1, period_seconds=3600)
    key = window_key(agent_key("t1", "a1"), 3600, NOW)
    p = plan([cand("r1", thr=thr)], counters={key: 1})
    assert ids(p) == []
    assert p.reasons["r1"] == (WaitingReason.THROTTLED, None)


def test_a_pool_throttle_spaces_starts_across_agents_and_names_the_pool():
    pool = PoolLimit("api", throttle=Throttle(1, 3600))
    cs = [cand("r1", agent="a1", pools=[pool]), cand("r2", agent="a2", pools=[pool])]
    p = plan(cs)
    assert ids(p) == ["r1"]
    assert p.reasons["r2"] == (WaitingReason.POOL_LIMIT, "api")


def test_a_blocked_pool_admits_nothing_until_blocked_until():
    pool = PoolLimit("key", max_concurrency=10, blocked_until=NOW + 30)
    cs = [cand("r1", agent="a1", pools=[pool]), cand("r2", agent="a2")]
    p = plan(cs)
    assert ids(p) == ["r2"]
    assert p.reasons["r1"] == (WaitingReason.RATE_LIMITED, "key")
    later = PoolLimit("key", max_concurrency=10, blocked_until=NOW - 1)
    assert ids(plan([cand("r1", agent="a1", pools=[later])])) == ["r1"]


def test_four_pools_all_must_allow():
    pools = [PoolLimit(f"p{i}", max_concurrency=1) for i in range(4)]
    free = plan([cand("r1", pools=pools)])
    assert ids(free) == ["r1"] and len(free.admit[0].holds) == 4
    held = plan([cand("r1", pools=pools)], counters={pool_key("t1", "p3"): 1})
    assert held.reasons["r1"] == (WaitingReason.POOL_LIMIT, "p3")


def test_paused_says_so():
    p = plan([cand("r1")], paused=True)
    assert p.reasons["r1"] == (WaitingReason.SCHEDULER_PAUSED, None) and not p.admit


def test_keyed_counters_lists_what_to_read():
    thr = Throttle(2, 30)
    keys = keyed_counters([cand("r1", cap=5, mc=1, thr=thr, pools=[PoolLimit("p", max_concurrency=2)])], NOW, 75)
    assert tenant_key("t1") in keys and agent_key("t1", "a1") in keys and pool_key("t1", "p") in keys
    assert window_key(agent_key("t1", "a1"), 30, NOW) in keys and window_key(agent_key("t1", "a1"), 30, NOW + 30) in keys


def test_handoff_changes_give_back_what_the_next_run_does_not_hold():
    nxt = Admit(cand("r2"), 0, "s000", NOW, holds=("LIM#T#t1", "LIM#P#t1#b"))
    assert handoff_changes(["LIM#T#t1", "LIM#A#t1#a1"], nxt) == (["LIM#A#t1#a1"], ["LIM#P#t1#b"])


def _session(**kw):
    from chalicelib.domain.model import SessionStatus, Trigger
    from chalicelib.domain.records import Session

    base = dict(agent_id="a", session_id="s", tenant_id="t", status=SessionStatus.QUEUED, trigger=Trigger.MANUAL,
                priority=Priority.NORMAL, scheduled_for=NOW - 5, queued_at=NOW - 5, max_attempts=4, timeout_seconds=60,
                stage="PENDING")
    base.update(kw)
    return Session(**base)


def test_waiting_reason_is_decided_at_read_time_from_the_clock_the_pause_and_what_admission_wrote():
    from chalicelib.domain.admission import waiting_reason
    from chalicelib.domain.model import SessionStatus

    assert waiting_reason(_session(), NOW, False) == ("CAPACITY", None)
    assert waiting_reason(_session(), NOW, True) == ("SCHEDULER_PAUSED", None)
    assert waiting_reason(_session(waiting_reason="POOL_LIMIT", waiting_for="gpu"), NOW, False) == ("POOL_LIMIT", "gpu")
    retry = _session(status=SessionStatus.RETRYING, attempt=1, next_attempt_at=NOW + 30,
                     error={"category": "TRANSIENT", "message": "x"})
    assert waiting_reason(retry, NOW, False) == ("BACKOFF", None)
    assert waiting_reason(retry, NOW + 31, False) == ("CAPACITY", None)
    limited = retry.with_(error={"category": "RATE_LIMITED", "message": "429"})
    assert waiting_reason(limited, NOW, False) == ("RATE_LIMITED", None)
    assert waiting_reason(_session(stage="ADMITTED"), NOW, False) == (None, None)
    assert waiting_reason(_session(status=SessionStatus.RUNNING, stage=None), NOW, False) == (None, None)
    assert waiting_reason(_session(scheduled_for=NOW + 40), NOW, False) == (None, None)  # its time has not come
