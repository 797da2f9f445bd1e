"""The tick on moto: exactly once, recovery, priority under the cap, pause, run-now."""
from __future__ import annotations

import os

import pytest

from chalicelib.adapters.tables import AgentTenantModel
from chalicelib.domain.ids import due_shard
from chalicelib.domain.model import Priority
from chalicelib.domain.schedule import ScheduleSpec
from chalicelib.services.container import Container
from chalicelib.services.dispatch import Dispatcher
from tests.functional.helpers import drain, take, work


def make_agent(api, name="a", kind="echo", config=None, **extra):
    r = api.post("/api/agents", {"name": name, "kind": kind, "config": config or {}, **extra})
    assert r.status_code == 201, r.body
    return r.json["id"]


def schedule(api, agent_id, expr="* * * * *", **extra):
    r = api.post(f"/api/agents/{agent_id}/schedule", {"cronExpression": expr, **extra})
    assert r.status_code == 200, r.body
    return r.json


def finish_runs(container, bodies):
    """Claim and end runs as succeeded, releasing their slots (the worker's writes, no agent)."""
    from chalicelib.domain.runflow import Next, Transition

    now = container.clock.now().timestamp()
    for b in bodies:
        res = container.runs.claim(b["a"], b["s"], b["n"], f"t-{b['s']}", now, now + 600)
        assert res.ok, res.session
        assert container.runs.finish(res.session, Transition(Next.SUCCEEDED), now, 0).ok


def sessions(api, agent_id, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    return api.get(f"/api/agents/{agent_id}/sessions?{qs}").json["items"]


def test_due_run_is_sent_with_the_delay_to_its_second(api, system, clock):
    aid = make_agent(api)
    schedule(api, aid, "1 12 * * *")  # clock at 11:59:30; first fire 12:01:00, beyond the lookahead
    assert take(system) == []
    clock.advance(60)
    report = system.dispatcher.tick()
    assert (report.due, report.created, report.admitted) == (1, 1, 1)
    sent = take(system)
    # whole seconds with one second of slack; the worker waits out the rest
    assert len(sent) == 1 and sent[0].delay_seconds == 29 and sent[0].body["a"] == aid
    clock.advance(29.3)
    assert work(system, sent) == ["succeeded"]
    assert system.dispatcher.tick().created == 0, "a retried tick creates nothing"
    [s] = sessions(api, aid)
    assert s["status"] == "SUCCEEDED" and s["startedAt"] == s["scheduledFor"] == "2026-03-02T12:01:00+00:00"


def test_a_schedule_due_within_the_lookahead_is_admitted_when_saved(api, system, clock):
    aid = make_agent(api)
    schedule(api, aid)  # 11:59:30: the 12:00:00 fire is planned now, not at the next tick
    sent = take(system)
    assert len(sent) == 1 and sent[0].delay_seconds == 29
    clock.advance(29)
    assert work(system, sent) == ["succeeded"]
    [s] = sessions(api, aid)
    assert s["status"] == "SUCCEEDED" and s["startedAt"] == s["scheduledFor"] == "2026-03-02T12:00:00+00:00"


def test_two_concurrent_ticks_admit_each_fire_once(api, system, clock):
    ids = [make_agent(api, f"a{i}") for i in range(12)]
    for aid in ids:
        schedule(api, aid, "1 12 * * *")
    clock.advance(60)
    other = Container(system.settings, clock=clock)
    reports = {}

    class RacingDispatcher(Dispatcher):
        """Reads the due set, then lets a second tick run to completion before writing:
        the worst interleaving of two ticks over the same due set, deterministically."""

        def _read_due(self, now):
            due = super()._read_due(now)
            if "b" not in reports:
                reports["b"] = other.dispatcher.tick()
            return due

    reports["a"] = RacingDispatcher(system).tick()
    reports = [reports["a"], reports["b"]]
    assert sum(r.created for r in reports) >= 12
    assert sum(r.lost_races for r in reports) >= 1, "the loser counted its lost race"
    sent = take(system)
    assert len(sent) == 5 == len({b.body["s"] for b in sent}), "the cap holds across both ticks"
    # A retried tick (same clock) creates nothing new.
    assert system.dispatcher.tick().created == 0
    clock.advance(30)
    results = work(system, sent) + drain(system)
    assert results.count("succeeded") == 12 and "duplicate" not in results
    for aid in ids:
        [s] = sessions(api, aid)
        assert s["status"] == "SUCCEEDED" and s["attempt"] == 1


def test_a_tick_that_dies_before_its_send_is_recovered_by_the_next(api, system, clock, monkeypatch):
    aid = make_agent(api)
    schedule(api, aid, "1 12 * * *")
    clock.advance(60)

    def crash(*a, **k):
        raise RuntimeError("the tick died here")

    monkeypatch.setattr(system.work_queue, "send_batch", crash)
    with pytest.raises(RuntimeError):
        system.dispatcher.tick()
    monkeypatch.undo()
    assert take(system) == []
    [s] = sessions(api, aid)
    assert s["status"] == "QUEUED"
    clock.advance(30 + system.settings.resend_grace_seconds + 1)  # past the fire and the grace
    report = system.dispatcher.tick()
    assert report.resent == 1
    sent = [m for m in take(system) if m.body["s"] == s["sessionId"]]
    assert len(sent) == 1
    assert work(system, sent) == ["succeeded"]


def test_duplicate_delivery_runs_once(api, system, clock):
    aid = make_agent(api)
    api.post(f"/api/agents/{aid}/run", {})
    sent = take(system)
    assert work(system, sent + sent) == ["succeeded", "duplicate"]
    assert system.worker.counters["duplicate"] == 1


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1}])
def test_cap_of_one_starts_three_pending_runs_in_priority_order(api, system, clock, settings_overrides):
    blocker = make_agent(api, "blocker")
    low, crit, high = (make_agent(api, n) for n in ("low", "crit", "high"))
    api.post(f"/api/agents/{blocker}/run", {})
    first = take(system)  # the blocker holds the only slot
    for aid, prio in ((low, "LOW"), (crit, "CRITICAL"), (high, "HIGH")):
        assert api.post(f"/api/agents/{aid}/run", {"priority": prio}).status_code == 202
    assert take(system) == [], "the cap holds: nothing else admitted"
    status = api.get("/api/scheduler/status").json
    assert status["pending"] == {"CRITICAL": 1, "HIGH": 1, "NORMAL": 0, "LOW": 1}
    order = []
    work(system, first)
    for _ in range(3):
        sent = take(system)
        assert len(sent) == 1, "never more than one running or queued"
        order.append(sent[0].body["a"])
        work(system, sent)
    assert order == [crit, high, low]


def test_pause_admits_nothing_and_resume_catches_up_the_latest(api, admin_api, system, clock):
    aid = make_agent(api)
    assert api.post("/api/scheduler/pause").status_code == 403
    r = admin_api.post("/api/scheduler/pause")
    assert r.status_code == 200 and r.json["paused"] is True
    schedule(api, aid, "*/10 * * * *")
    clock.advance(35 * 60)  # 12:34:30; fires 12:00, 12:10, 12:20, 12:30 missed
    assert system.dispatcher.tick().created == 0
    assert api.post(f"/api/agents/{aid}/run", {}).status_code == 202
    assert take(system) == [], "paused: run-now waits too"
    admin_api.post("/api/scheduler/resume")
    assert work(system, take(system)) == ["succeeded"]  # the manual run, admitted on resume
    report = system.dispatcher.tick()
    assert report.created == 1 and report.skipped == 3
    items = sessions(api, aid, limit=10)
    skipped = [s for s in items if s["status"] == "SKIPPED"]
    assert {s["skipReason"] for s in skipped} == {"PAUSED"}
    assert len(skipped) == 3


def test_overlap_is_judged_when_the_run_starts(api, system, clock):
    """A fire planned ahead while a run is active is created; the worker skips it if the
    earlier run is still running when it starts (SKIP policy), and records why."""
    from chalicelib.domain.model import SessionStatus

    aid = make_agent(api, kind="sleep", config={"seconds": 1})
    schedule(api, aid)  # the 12:00 run is admitted on save
    [first] = take(system)
    clock.advance(30)
    s = system.sessions.get(aid, first.body["s"])
    now = clock.now().timestamp()
    long_run = s.with_(status=SessionStatus.RUNNING, attempt=1, started_at=now, run_lease_until=now + 600, stage=None)
    system.sessions.save(long_run, expect_status=[SessionStatus.QUEUED], expect_attempt=0)
    clock.advance(30)  # 12:00:30: the tick plans 12:01 while 12:00 still runs
    report = system.dispatcher.tick()
    assert report.created == 1 and report.skipped == 0
    second = take(system)
    clock.advance(30)
    assert work(system, second) == ["skipped"]
    skipped = sessions(api, aid, status="SKIPPED")
    assert [s["skipReason"] for s in skipped] == ["OVERLAP"]
    assert skipped[0]["scheduledFor"] == "2026-03-02T12:01:00+00:00"


def test_overlap_of_a_late_fire_is_skipped_by_the_tick(api, system, clock):
    aid = make_agent(api, kind="sleep", config={"seconds": 1})
    schedule(api, aid, "30 12 * * *")
    api.post(f"/api/agents/{aid}/run", {})  # an active run
    take(system)
    clock.advance(3600)  # 12:59:30: the 12:30 fire was missed (an outage), the run still active
    report = system.dispatcher.tick()
    assert report.skipped == 1 and report.created == 0
    assert [s["skipReason"] for s in sessions(api, aid, status="SKIPPED")] == ["OVERLAP"]


BULK_N = int(os.environ.get("SCHEDULER_TEST_BULK_N", "2000"))
BULK_CAP = BULK_N // 10


def test_many_due_schedules_over_shards_are_admitted_in_order_under_the_cap(system, clock, request):
    """Many due schedules: each fire created once, admitted highest priority first, cap held."""
    n, cap = BULK_N, BULK_CAP
    # moto's transaction rollback copies whole tables (each run ends with a transaction): use the
    # bench's per-item rollback
    from bench import moto_speed

    request.addfinalizer(moto_speed.apply())
    now = clock.now().timestamp()
    fire = now + 30
    prios = [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW]
    with AgentTenantModel.batch_write() as batch:
        for i in range(n):
            aid = f"ag_bulk{i:05d}"
            spec = ScheduleSpec(cron_expression="* * * * *", priority=prios[i % 4], created_at=now, updated_at=now)
            batch.save(AgentTenantModel(
                "bulk", aid, name=aid, kind="echo", config={}, timeout_seconds=60, max_retries=0,
                created_at=now, updated_at=now, schedule=spec.to_item(), next_run_at=fire,
                due_shard=due_shard(aid, system.settings.due_shards), due_at=fire,
            ))
    small = Container(system.settings.with_(max_concurrent_agents=cap), clock=clock)
    report = small.dispatcher.tick()
    assert report.due == n and report.created == n and report.admitted == cap
    seen: list[str] = []
    rank = {p.value: p.rank for p in prios}
    last_rank = -1
    for _ in range(n // cap * 2):
        sent = take(small)
        if not sent:
            break
        assert len(sent) <= cap
        ids = [s.body["s"] for s in sent]
        seen += ids
        items = small.sessions.batch_get([(s.body["a"], s.body["s"]) for s in sent])
        ranks = sorted(rank[items[i].priority.value] for i in ids)
        assert ranks[0] >= last_rank, "no lower priority admitted before a higher one"
        last_rank = ranks[-1]
        finish_runs(small, [x.body for x in sent])  # these runs finished: their slots are free
        small.dispatcher.tick()
    assert len(seen) == n == len(set(seen))


def test_a_resaved_schedule_whose_next_fire_already_exists_keeps_advancing(api, system, clock):
    """Re-saving lands next_run_at on a fire the tick already created: the tick must still
    advance it (its session put fails, its schedule update holds), never get stuck."""
    aid = make_agent(api)
    schedule(api, aid, "1 12 * * *")
    clock.advance(60)  # 12:00:30: the tick plans 12:01
    assert system.dispatcher.tick().created == 1
    schedule(api, aid, "* * * * *")  # first fire 12:01 again: that session exists already
    assert system.dispatcher.tick().lost_races == 0
    before = system.agents.get("tenant-a", aid).next_run_at
    clock.advance(60)
    report = system.dispatcher.tick()
    assert report.created == 1 and report.lost_races == 0
    agent = system.agents.get("tenant-a", aid)
    assert agent.next_run_at > before
    assert agent.active_runs == 2, "only the runs really created are counted"
