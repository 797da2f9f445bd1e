"""Schedule management through the API on moto: bulk changes, conflicts, the fire ledger.

The ledger tests drive the real tick and worker on the fixed clock: ``system.dispatcher.tick()``,
runs finished by taking the work queue's messages (whatever their DelaySeconds: moto delays by
wall time, the clock here is fixed) and handing them to ``system.worker`` with the clock set
to when SQS would deliver them. A schedule saved (or enabled) with its first fire inside the
lookahead has that fire planned and admitted at once, before any tick.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.tables import AgentTenantModel
from chalicelib.domain.ids import scheduled_session_id
from chalicelib.errors import ConditionFailed
from tests.functional.helpers import take, work

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # T0 is 11:59:30


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return NOON + timedelta(minutes=minutes, seconds=seconds)


def iso(dt: datetime) -> str:
    return dt.isoformat()


def new_agent(api, name="agent", kind="echo", config=None, **fields) -> str:
    r = api.post("/api/agents", {"name": name, "kind": kind, "config": config or {}, **fields})
    assert r.status_code == 201, r.body
    return r.json["id"]


def schedule(api, agent_id, expr, **fields) -> dict:
    r = api.post(f"/api/agents/{agent_id}/schedule", {"cronExpression": expr, **fields})
    assert r.status_code == 200, r.body
    return r.json


def ledger(api, agent_id, **query) -> dict[str, dict]:
    """Ledger items by fire time in UTC: "HH:MM" on 2026-03-02, "MM-DD HH:MM" on other days."""
    qs = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in query.items())
    r = api.get(f"/api/agents/{agent_id}/fires" + (f"?{qs}" if qs else ""))
    assert r.status_code == 200, r.body
    out = {}
    for i in r.json["items"]:
        t = datetime.fromisoformat(i["fireTime"]).astimezone(timezone.utc)
        out[t.strftime("%H:%M" if t.date() == NOON.date() else "%m-%d %H:%M")] = i
    return out


# --- bulk ----------------------------------------------------------------------------------
def test_bulk_applies_good_operations_and_reports_bad_ones_in_order(system, api, other_api):
    a1 = new_agent(api, "a1")
    a2 = new_agent(api, "a2")
    a3 = new_agent(api, "a3")
    schedule(api, a3, "0 6 * * *")
    theirs = new_agent(other_api, "theirs")
    ops = [
        {"agentId": a1, "action": "schedule", "schedule": {"cronExpression": "*/15 * * * *", "priority": "HIGH"}},
        {"agentId": a2, "action": "schedule", "schedule": {"cronExpression": "61 * * * *"}},
        {"agentId": "ag_doesnotexist", "action": "schedule", "schedule": {"cronExpression": "0 * * * *"}},
        {"agentId": theirs, "action": "schedule", "schedule": {"cronExpression": "0 * * * *"}},
        {"agentId": a2, "action": "unschedule"},
        {"agentId": a3, "action": "disable"},
        {"agentId": a1, "action": "enable"},
        {"agentId": a2, "action": "schedule", "schedule": {"cronExpression": "0 9 * * *", "bogus": 1}},
        {"agentId": a2, "action": "schedule", "schedule": {"cronExpression": "0 9 * * *", "timezone": "Europe/Paris"}},
        {"agentId": a3, "action": "disable", "schedule": {"cronExpression": "0 9 * * *"}},
        {"agentId": theirs, "action": "disable"},
    ]
    r = api.post("/api/schedules/bulk", {"operations": ops})
    assert r.status_code == 200, r.body
    results = r.json["results"]
    assert [x["agentId"] for x in results] == [op["agentId"] for op in ops]
    assert [x["ok"] for x in results] == [True, False, False, False, False, True, True, False, True, False, False]
    assert all("error" not in x for x in results if x["ok"])

    # Each error is the body a single call would have answered.
    bad_cron = results[1]["error"]
    assert bad_cron["code"] == "VALIDATION_ERROR" and bad_cron["field"] == "operations[1].schedule.cronExpression"
    single = api.post(f"/api/agents/{a2}/schedule", {"cronExpression": "61 * * * *"})
    assert single.status_code == 400 and results[1]["status"] == 400
    assert bad_cron["message"] == "operations[1].schedule." + single.json["message"]
    unknown, foreign = results[2]["error"], results[3]["error"]
    assert results[2]["status"] == results[3]["status"] == 404
    assert unknown["code"] == foreign["code"] == "NOT_FOUND"
    assert foreign == api.get(f"/api/agents/{theirs}").json  # exactly as if it did not exist
    assert results[4]["status"] == 404 and "no schedule" in results[4]["error"]["message"]
    assert results[7]["error"]["field"] == "operations[7].schedule.bogus"
    assert results[9]["error"]["field"] == "operations[9].schedule"
    assert results[10]["status"] == 404

    # The good ones landed.
    s1 = api.get(f"/api/agents/{a1}/schedule").json
    assert s1["cronExpression"] == "*/15 * * * *" and s1["priority"] == "HIGH" and s1["enabled"] is True
    # Its 12:00 fire is inside the lookahead: planned and admitted with the request, as a single save does.
    [sent] = take(system)
    assert sent.body["s"] == scheduled_session_id(a1, at(0).timestamp()) and sent.delay_seconds == 29
    assert s1["nextRunAt"] == "2026-03-02T12:15:00+00:00"
    s2 = api.get(f"/api/agents/{a2}/schedule").json
    assert s2["cronExpression"] == "0 9 * * *" and s2["timezone"] == "Europe/Paris"
    assert api.get(f"/api/agents/{a3}/schedule").json["enabled"] is False
    assert other_api.get(f"/api/agents/{theirs}").json["schedule"] is None
    # An enabled schedule is due for the tick; a disabled one is not.
    due = {m.agent_id for n in range(system.settings.due_shards) for m in AgentTenantModel.due_index.query(f"d{n:03d}")}
    assert a1 in due and a2 in due and a3 not in due


def test_bulk_operations_on_one_agent_compose(api):
    a = new_agent(api, "a")
    r = api.post("/api/schedules/bulk", {"operations": [
        {"agentId": a, "action": "schedule", "schedule": {"cronExpression": "0 * * * *"}},
        {"agentId": a, "action": "disable"},
        {"agentId": a, "action": "unschedule"},
        {"agentId": a, "action": "enable"},  # nothing left to enable
        {"agentId": a, "action": "schedule", "schedule": {"cronExpression": "@daily", "enabled": False}},
        {"agentId": a, "action": "enable"},
    ]})
    assert [x["ok"] for x in r.json["results"]] == [True, True, True, False, True, True]
    s = api.get(f"/api/agents/{a}/schedule").json
    assert s["cronExpression"] == "@daily" and s["enabled"] is True
    assert s["nextRunAt"] == "2026-03-03T00:00:00+00:00"


def test_bulk_schedule_and_enable_admit_a_fire_inside_the_lookahead_at_once(system, api):
    soon, later, paused = new_agent(api, "soon"), new_agent(api, "later"), new_agent(api, "paused")
    schedule(api, paused, "* * * * *", enabled=False)
    assert take(system) == []
    r = api.post("/api/schedules/bulk", {"operations": [
        {"agentId": soon, "action": "schedule", "schedule": {"cronExpression": "0 12 * * *"}},
        {"agentId": later, "action": "schedule", "schedule": {"cronExpression": "0 13 * * *"}},
        {"agentId": paused, "action": "enable"},
    ]})
    assert all(x["ok"] for x in r.json["results"]), r.body
    # 11:59:30: the 12:00 fires are planned now, not at the next tick; 13:00 is left to the tick.
    sent = {m.body["a"]: m for m in take(system)}
    assert set(sent) == {soon, paused}
    for a in (soon, paused):
        assert sent[a].body["s"] == scheduled_session_id(a, at(0).timestamp()) and sent[a].delay_seconds == 29
        assert ledger(api, a, **{"to": "2026-03-02T13:00:00Z"})["12:00"]["outcome"] == "QUEUED"
    assert api.get(f"/api/agents/{soon}/schedule").json["nextRunAt"] == "2026-03-03T12:00:00+00:00"
    assert api.get(f"/api/agents/{paused}/schedule").json["nextRunAt"] == "2026-03-02T12:01:00+00:00"
    assert api.get(f"/api/agents/{later}/schedule").json["nextRunAt"] == "2026-03-02T13:00:00+00:00"
    assert system.dispatcher.tick().created == 0  # nothing left for the tick to plan twice


def test_bulk_racing_a_tick_reads_again_and_never_restores_an_old_next_run_at(system, api, clock, monkeypatch):
    agent = new_agent(api, "raced")
    schedule(api, agent, "* * * * *")  # 11:59:30: the 12:00 fire is admitted at once; next 12:01
    take(system)
    clock.set(at(0, 30))
    service, agents = system.schedule_service, system.agent_service
    read, save = service._get_agents, agents._save
    ticked = []

    def read_then_tick(tenant, ids):
        found = read(tenant, ids)
        if not ticked:  # between the bulk's read and its write, the tick plans 12:01 and moves on
            ticked.append(system.dispatcher.tick())
        return found

    writes = []

    def recorded_save(agent, must_exist, expected=None, **kw):
        assert expected is not None, "a bulk write is conditional on the agent as read"
        try:
            written = save(agent, must_exist, expected=expected, **kw)
        except ConditionFailed:
            writes.append("lost the race")
            raise
        writes.append("written")
        return written

    monkeypatch.setattr(service, "_get_agents", read_then_tick)
    monkeypatch.setattr(agents, "_save", recorded_save)
    r = api.post("/api/schedules/bulk", {"operations": [{"agentId": agent, "action": "disable"}]})
    assert r.json["results"] == [{"agentId": agent, "action": "disable", "ok": True}]
    assert ticked[0].created == 1
    assert writes == ["lost the race", "written"]  # the stale write was refused; read again, applied again

    stored = system.agents.get("tenant-a", agent)
    assert stored.schedule.enabled is False
    assert stored.schedule.disabled_periods == ((at(0, 30).timestamp(), None),)
    assert stored.next_run_at == at(2).timestamp()  # the tick's, not the 12:01 the bulk had read
    assert stored.active_runs == 2  # 12:00 and 12:01: the run bookkeeping is the tick's
    items = ledger(api, agent, **{"from": "2026-03-02T12:00:00Z", "to": "2026-03-02T13:00:00Z"})
    assert items["12:01"]["outcome"] == "QUEUED"
    assert items["12:01"]["sessionId"] == scheduled_session_id(agent, at(1).timestamp())



def test_bulk_gives_up_on_an_agent_that_keeps_moving_and_applies_the_others(system, api, monkeypatch):
    busy, calm = new_agent(api, "busy"), new_agent(api, "calm")
    schedule(api, busy, "0 6 * * *")
    schedule(api, calm, "0 6 * * *")
    agents = system.agent_service
    save = agents._save
    attempts = []

    def always_moved(agent, must_exist, expected=None, **kw):
        if agent.agent_id == busy:
            attempts.append(expected.next_run_at)
            raise ConditionFailed("next_run_at moved")
        return save(agent, must_exist, expected=expected, **kw)

    monkeypatch.setattr(agents, "_save", always_moved)
    r = api.post("/api/schedules/bulk", {"operations": [
        {"agentId": busy, "action": "disable"},
        {"agentId": calm, "action": "disable"},
    ]})
    busy_result, calm_result = r.json["results"]
    assert busy_result["ok"] is False and busy_result["status"] == 409 and busy_result["error"]["code"] == "CONFLICT"
    assert len(attempts) > 1  # read again and retried, a bounded number of times
    assert calm_result == {"agentId": calm, "action": "disable", "ok": True}
    assert api.get(f"/api/agents/{busy}/schedule").json["enabled"] is True
    assert api.get(f"/api/agents/{calm}/schedule").json["enabled"] is False

def test_bulk_reports_an_agent_deleted_between_read_and_write(system, api, monkeypatch):
    keep, gone = new_agent(api, "keep"), new_agent(api, "gone")
    stale = system.agents.get("tenant-a", gone)
    assert api.delete(f"/api/agents/{gone}").status_code == 204
    service = system.schedule_service
    read = service._get_agents
    monkeypatch.setattr(service, "_get_agents", lambda tenant, ids: {**read(tenant, ids), gone: stale})
    r = api.post("/api/schedules/bulk", {"operations": [
        {"agentId": gone, "action": "schedule", "schedule": {"cronExpression": "0 * * * *"}},
        {"agentId": keep, "action": "schedule", "schedule": {"cronExpression": "0 * * * *"}},
    ]})
    assert [(x["ok"], x.get("status")) for x in r.json["results"]] == [(False, 404), (True, None)]
    assert api.get(f"/api/agents/{gone}").status_code == 404  # the conditional write did not resurrect it


def test_bulk_reads_agents_in_one_batch_get(api, monkeypatch):
    ids = [new_agent(api, f"a{i}") for i in range(12)]
    calls = {"get": 0, "batch_get": 0}
    real_get, real_batch = AgentTenantModel.get.__func__, AgentTenantModel.batch_get.__func__

    def get(cls, *a, **kw):
        calls["get"] += 1
        return real_get(cls, *a, **kw)

    def batch_get(cls, *a, **kw):
        calls["batch_get"] += 1
        return real_batch(cls, *a, **kw)

    monkeypatch.setattr(AgentTenantModel, "get", classmethod(get))
    monkeypatch.setattr(AgentTenantModel, "batch_get", classmethod(batch_get))
    # Fires far from the lookahead: no agent is planned at once (that would read it again).
    ops = [{"agentId": i, "action": "schedule", "schedule": {"cronExpression": "H 18 * * *"}} for i in ids]
    r = api.post("/api/schedules/bulk", {"operations": ops})
    assert all(x["ok"] for x in r.json["results"])
    assert calls == {"get": 0, "batch_get": 1}


@pytest.mark.parametrize("body, field", [
    ({"operations": []}, "operations"),
    ({"operations": "all"}, "operations"),
    ({}, "operations"),
    ({"operations": [{"agentId": "x", "action": "schedule"}], "extra": 1}, "extra"),
    ({"operations": [{"agentId": "x", "action": "pause"}]}, "operations[0].action"),
    ({"operations": [{"action": "enable"}]}, "operations[0].agentId"),
    ({"operations": [{"agentId": "x", "action": "schedule", "schedule": "0 * * * *"}]}, "operations[0].schedule"),
    ({"operations": [{"agentId": "x", "action": "enable"}] * 101}, "operations"),
])
def test_bulk_refuses_a_malformed_request_as_a_whole(api, body, field):
    r = api.post("/api/schedules/bulk", body)
    assert r.status_code == 400, r.body
    assert r.json["field"] == field


def test_bulk_refuses_a_body_that_is_not_json(api):
    r = api.post("/api/schedules/bulk", raw="{not json")
    assert r.status_code == 400 and r.json["code"] == "MALFORMED_REQUEST"


# --- conflicts ------------------------------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 3}])
def test_conflicts_stay_inside_the_tenant(api, other_api):
    mine = [new_agent(api, f"mine{i}", timeoutSeconds=600) for i in range(3)]
    mine.append(new_agent(api, "mine-low", timeoutSeconds=600))
    theirs = [new_agent(other_api, f"theirs{i}", timeoutSeconds=600) for i in range(5)]
    for a in mine[:3]:
        schedule(api, a, "0 * * * *", priority="HIGH")
    schedule(api, mine[3], "0 * * * *", priority="LOW")
    for a in theirs:
        schedule(other_api, a, "0 * * * *")

    r = api.get("/api/schedules/conflicts")
    assert r.status_code == 200, r.body
    body = r.json
    assert body["maxConcurrentAgents"] == 3 and body["from"] == "2026-03-02T11:59:30+00:00"
    by_type = {c["type"]: c for c in body["conflicts"]}
    assert set(by_type) == {"CAPACITY", "HOT_MINUTE"}
    for c in body["conflicts"]:
        assert set(c["agentIds"]) <= set(mine)
        assert c["at"] == "2026-03-02T12:00:00+00:00" and c["occurrences"] == 24
        assert "\n" not in c["message"]
        for ch in c.get("suggestion", {}).get("changes", []):
            assert ch["agentId"] in mine
    assert set(by_type["HOT_MINUTE"]["agentIds"]) == set(mine)
    assert by_type["CAPACITY"]["waits"] == [{"agentId": mine[3], "priority": "LOW", "waitSeconds": 600}]
    assert "mine-low (LOW) up to 10m" in by_type["CAPACITY"]["message"]
    assert len(by_type["HOT_MINUTE"]["suggestion"]["changes"]) == 2

    theirs_view = other_api.get("/api/schedules/conflicts?hours=2").json
    assert theirs_view["conflicts"] and all(set(c["agentIds"]) <= set(theirs) for c in theirs_view["conflicts"])


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 3}])
def test_conflicts_window_and_save_time_warnings(api):
    a, b, c = (new_agent(api, n, timeoutSeconds=60) for n in ("a", "b", "c"))
    assert schedule(api, a, "0 9 * * *", timezone="America/New_York")["conflicts"] == []
    assert schedule(api, b, "0 9 * * *", timezone="America/New_York")["conflicts"] == []
    saved = schedule(api, c, "0 14 * * *")  # 09:00 in New York is 14:00 UTC in March (EST)
    (hot,) = saved["conflicts"]
    assert hot["type"] == "HOT_MINUTE" and set(hot["agentIds"]) == {a, b, c}
    assert hot["at"] == "2026-03-02T14:00:00+00:00"  # zones differ: shown in UTC
    assert api.get(f"/api/agents/{c}/schedule").json["cronExpression"] == "0 14 * * *"  # the write succeeded
    # From 09:00 New York on the 9th (EDT), 14:00 UTC is 10:00: the collision is gone.
    r = api.get("/api/schedules/conflicts?from=2026-03-09T00:00:00-04:00&hours=168")
    assert r.status_code == 200 and r.json["conflicts"] == []
    r = api.get("/api/schedules/conflicts?from=2026-03-02T13:00:00Z&hours=1")
    assert [x["type"] for x in r.json["conflicts"]] == []  # 14:00 is outside [13:00, 14:00)
    r = api.get("/api/schedules/conflicts?from=2026-03-02T13:00:00Z&hours=2")
    assert [x["type"] for x in r.json["conflicts"]] == ["HOT_MINUTE"]


@pytest.mark.parametrize("query, field", [
    ("hours=0", "hours"),
    ("hours=169", "hours"),
    ("hours=1.5", "hours"),
    ("hours=abc", "hours"),
    ("from=yesterday", "from"),
    ("from=2026-03-02T12:00:00", "from"),
    ("window=2", "window"),
])
def test_conflicts_refuse_bad_query(api, query, field):
    r = api.get(f"/api/schedules/conflicts?{query}")
    assert r.status_code == 400, r.body
    assert r.json["field"] == field


# --- the fire ledger -----------------------------------------------------------------------------
def test_ledger_shows_runs_an_overlap_skip_and_a_pause(system, api, admin_api, clock, monkeypatch):
    agent = new_agent(api, "every minute", kind="sleep", config={"seconds": 65})
    schedule(api, agent, "* * * * *")  # 11:59:30: the 12:00 fire is admitted at once
    [noon] = take(system)
    clock.set(at(0))
    system.dispatcher.tick()  # 12:01 is inside the lookahead: created and admitted, judged when it starts
    [next_minute] = take(system)
    assert next_minute.body["s"] == scheduled_session_id(agent, at(1).timestamp())

    # The 12:00 run lasts 65 s: SQS delivers the 12:01 run while it is still running.
    delivered: list[str] = []
    sleep = clock.sleep

    def sleep_and_deliver(seconds):
        sleep(seconds)
        if not delivered and clock.now() >= at(1):
            delivered.append(system.worker.handle(next_minute.body))

    monkeypatch.setattr(clock, "sleep", sleep_and_deliver)
    assert work(system, [noon]) == ["succeeded"]  # at 12:01:05
    assert delivered == ["skipped"]  # 12:01: the 12:00 run was still running: skipped, OVERLAP
    clock.set(at(1, 10))
    assert admin_api.post("/api/scheduler/pause").status_code == 200
    clock.set(at(6))
    assert system.dispatcher.tick().created == 0  # paused: nothing is planned
    clock.set(at(6, 10))
    assert admin_api.post("/api/scheduler/resume").status_code == 200
    system.dispatcher.tick()  # the fires missed while paused are skipped; the latest runs; 12:07 is planned

    items = ledger(api, agent, **{"from": "2026-03-02T11:00:00Z", "to": "2026-03-02T12:30:00Z"})
    assert min(items) == "12:00"  # the schedule did not exist before 11:59:30
    assert items["12:00"]["outcome"] == "SUCCEEDED"
    assert items["12:00"]["sessionId"] == scheduled_session_id(agent, at(0).timestamp())
    assert items["12:01"]["outcome"] == "SKIPPED" and items["12:01"]["reason"] == "OVERLAP"
    assert items["12:01"]["sessionId"] == scheduled_session_id(agent, at(1).timestamp())
    for hhmm in ("12:02", "12:03", "12:04", "12:05"):  # inside the pause: missed, however recent
        assert items[hhmm]["outcome"] == "SKIPPED" and items[hhmm]["reason"] == "PAUSED", hhmm
    latest = items["12:06"]  # catch-up LATEST: the latest missed fire still runs
    assert latest["outcome"] == "QUEUED" and "reason" not in latest
    assert latest["sessionId"] == scheduled_session_id(agent, at(6).timestamp())
    assert items["12:07"]["outcome"] == "QUEUED" and "reason" not in items["12:07"]  # on time, planned ahead
    assert all(items[f"12:{m:02d}"]["outcome"] == "UPCOMING" for m in range(8, 30))
    assert items["12:29"]["outcome"] == "UPCOMING" and "sessionId" not in items["12:29"]
    assert len(items) == 30
    # Every fire is accounted for, each with a reason when it was skipped.
    assert all(("reason" in i) == (i["outcome"] == "SKIPPED") for i in items.values())
    # The same through the session API.
    s = api.get(f"/api/agents/{agent}/sessions/{items['12:03']['sessionId']}").json
    assert s["status"] == "SKIPPED" and s["skipReason"] == "PAUSED"
    s = api.get(f"/api/agents/{agent}/sessions/{items['12:01']['sessionId']}").json
    assert s["status"] == "SKIPPED" and s["skipReason"] == "OVERLAP"


def test_ledger_derives_reasons_for_fires_without_a_session(system, api, clock):
    agent = new_agent(api, "derived")
    schedule(api, agent, "*/5 * * * *")  # 11:59:30: the 12:00 fire is admitted at once
    clock.set(at(0))
    system.dispatcher.tick()
    assert work(system, take(system)) == ["succeeded"]
    r = api.post("/api/schedules/bulk", {"operations": [{"agentId": agent, "action": "disable"}]})
    assert r.json["results"][0]["ok"]
    clock.set(at(40))
    items = ledger(api, agent)
    assert items["12:00"]["outcome"] == "SUCCEEDED"
    for hhmm in ("12:05", "12:10", "12:35"):  # past, never reached by the tick: derived from the periods
        assert items[hhmm] == {"fireTime": items[hhmm]["fireTime"], "outcome": "SKIPPED", "reason": "DISABLED"}
    assert items["12:40"]["outcome"] == "UPCOMING" and items["12:40"]["reason"] == "DISABLED"
    assert items["12:45"]["outcome"] == "UPCOMING" and items["12:45"]["reason"] == "DISABLED"
    # Enabled again: what is ahead is simply upcoming; what was missed stays DISABLED.
    clock.set(at(40, 30))
    r = api.post("/api/schedules/bulk", {"operations": [{"agentId": agent, "action": "enable"}]})
    assert r.json["results"][0]["ok"]
    items = ledger(api, agent)
    assert items["12:45"] == {"fireTime": items["12:45"]["fireTime"], "outcome": "UPCOMING"}
    assert items["12:10"]["outcome"] == "SKIPPED" and items["12:10"]["reason"] == "DISABLED"
    # Enabling planned the fires up to the lookahead at once: the ones missed while disabled are
    # recorded, and catch-up LATEST runs the latest of them (12:40), admitted with the request.
    assert items["12:35"]["outcome"] == "SKIPPED" and items["12:35"]["reason"] == "DISABLED"
    assert items["12:35"]["sessionId"] == scheduled_session_id(agent, at(35).timestamp())
    assert items["12:40"]["outcome"] == "QUEUED" and "reason" not in items["12:40"]
    assert [m.body["s"] for m in take(system)] == [items["12:40"]["sessionId"]]


def test_ledger_window_start_end_and_time_zone(api):
    agent = new_agent(api, "windowed")
    schedule(api, agent, "0 * * * *", timezone="America/New_York", endAt="2026-03-02T14:30:00Z")
    r = api.get(f"/api/agents/{agent}/fires")
    assert r.status_code == 200
    items = r.json["items"]
    assert items[0]["fireTime"] == "2026-03-02T07:00:00-05:00"  # 12:00 UTC, shown in the schedule's zone
    # Saved at 11:59:30: the 12:00 fire, inside the lookahead, was admitted with the save.
    first_fire = datetime(2026, 3, 2, 12, tzinfo=timezone.utc).timestamp()
    assert items[0] == {
        "fireTime": "2026-03-02T07:00:00-05:00", "outcome": "QUEUED",
        "sessionId": scheduled_session_id(agent, first_fire),
    }
    assert [i["outcome"] for i in items[1:3]] == ["UPCOMING"] * 2
    assert items[3] == {"fireTime": "2026-03-02T10:00:00-05:00", "outcome": "SKIPPED", "reason": "OUTSIDE_WINDOW"}
    assert items[-1]["fireTime"] == "2026-03-03T06:00:00-05:00"  # default window: now + 24 h


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1}])
def test_ledger_shows_a_run_waiting_for_a_slot_as_pending(system, api, clock):
    first = new_agent(api, "first")
    second = new_agent(api, "second")
    schedule(api, first, "0 12 * * *", priority="HIGH")  # 11:59:30: admitted at once, the one slot
    schedule(api, second, "0 12 * * *", priority="LOW")  # planned at once too, but waits for the slot
    assert ledger(api, first)["12:00"]["outcome"] == "QUEUED"
    pending = ledger(api, second)["12:00"]
    assert pending["outcome"] == "PENDING" and pending["sessionId"] == scheduled_session_id(second, at(0).timestamp())
    clock.set(at(0))
    system.dispatcher.tick()  # the slot is still taken
    assert ledger(api, second)["12:00"]["outcome"] == "PENDING"
    clock.set(at(0, 2))
    [run] = take(system)  # only the first run was sent
    assert run.body["a"] == first
    assert work(system, [run]) == ["succeeded"]  # the first run ends and admits the second at once
    [run] = take(system)
    assert run.body["a"] == second and run.delay_seconds == 0
    assert work(system, [run]) == ["succeeded"]
    assert ledger(api, first)["12:00"]["outcome"] == "SUCCEEDED"
    assert ledger(api, second)["12:00"]["outcome"] == "SUCCEEDED"


def test_ledger_errors(api, other_api):
    plain = new_agent(api, "no schedule")
    r = api.get(f"/api/agents/{plain}/fires")
    assert r.status_code == 404 and "no schedule" in r.json["message"]
    theirs = new_agent(other_api, "theirs")
    schedule(other_api, theirs, "0 * * * *")
    r = api.get(f"/api/agents/{theirs}/fires")
    assert r.status_code == 404 and r.json == {"code": "NOT_FOUND", "message": f"agent {theirs!r} not found"}
    busy = new_agent(api, "busy")
    schedule(api, busy, "* * * * *")
    r = api.get(f"/api/agents/{busy}/fires")  # 48 h of every minute: 2,880 fires
    assert r.status_code == 400 and r.json["field"] == "to"
    ok = api.get(f"/api/agents/{busy}/fires?from=2026-03-02T12:00:00Z&to=2026-03-02T23:00:00Z")
    assert ok.status_code == 200 and len(ok.json["items"]) == 660
    r = api.get(f"/api/agents/{busy}/fires?from=2026-03-02T12:00:00Z&to=2026-03-02T12:00:00Z")
    assert r.status_code == 400 and r.json["field"] == "to"
    r = api.get(f"/api/agents/{busy}/fires?from=noon")
    assert r.status_code == 400 and r.json["field"] == "from"
    r = api.get(f"/api/agents/{busy}/fires?limit=5")
    assert r.status_code == 400 and r.json["field"] == "limit"
