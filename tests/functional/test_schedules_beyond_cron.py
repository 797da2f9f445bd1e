"""rate() and at() schedules, excluded dates, the jitter bound, backfill and schedule history on moto."""
from __future__ import annotations

import pytest

from chalicelib.adapters.history import ScheduleHistoryModel, history_pk, version_key
from chalicelib.errors import ConditionFailed
from tests.functional.helpers import drain, take, work


def make_agent(api, name="a"):
    r = api.post("/api/agents", {"name": name, "kind": "echo", "config": {}})
    assert r.status_code == 201, r.body
    return r.json["id"]


def put(api, aid, **body):
    return api.post(f"/api/agents/{aid}/schedule", body)


def ledger(api, aid, frm, to):
    r = api.get(f"/api/agents/{aid}/fires?from={frm}&to={to}")
    assert r.status_code == 200, r.body
    return r.json["items"]


# --- expressions -------------------------------------------------------------------------------
def test_rate_is_anchored_at_the_first_save_and_keeps_its_anchor(api, clock):
    aid = make_agent(api)
    r = put(api, aid, expression="rate(10 minutes)")  # saved at 11:59:30
    assert r.status_code == 200, r.body
    s = r.json
    assert s["expression"] == s["cronExpression"] == "rate(10 minutes)" and s["version"] == 1
    assert s["nextRuns"][:2] == ["2026-03-02T12:09:30+00:00", "2026-03-02T12:19:30+00:00"]
    clock.advance(125)
    again = put(api, aid, expression="rate(10 minutes)", priority="HIGH").json
    assert again["nextRunAt"] == "2026-03-02T12:09:30+00:00" and again["version"] == 2  # same anchor
    other = put(api, aid, cronExpression="rate(5 minutes)").json
    assert other["nextRunAt"] == "2026-03-02T12:06:35+00:00"  # a new expression counts from its save
    started = put(api, aid, expression="rate(1 hour)", startAt="2026-03-02T13:15:00Z").json
    assert started["nextRuns"][:2] == ["2026-03-02T13:15:00+00:00", "2026-03-02T14:15:00+00:00"]


@pytest.mark.parametrize("body,field,words", [
    ({"expression": "at(2026-03-02T11:00:00)"}, "expression", "in the past"),
    ({"expression": "at(2026-03-08T02:30:00)", "timezone": "America/New_York"}, "expression", "does not exist"),
    ({"cronExpression": "rate(0 minutes)"}, "cronExpression", "at least 1"),
    ({"expression": "* * * * *", "cronExpression": "* * * * *"}, "expression", "not both"),
    ({"priority": "HIGH"}, "expression", "required"),
    ({"expression": "*/5 * * * *", "jitterSeconds": 301}, "jitterSeconds", "shortest interval"),
    ({"expression": "rate(2 minutes)", "jitterSeconds": 121}, "jitterSeconds", "120 s"),
    ({"expression": "@daily", "excludeDates": ["2026-02-30"]}, "excludeDates", "excludeDates[0]"),
    ({"expression": "@daily", "excludeDates": ["2026-01-01"] * 367}, "excludeDates", "at most 366"),
])
def test_bad_schedules_are_400_naming_the_field(api, body, field, words):
    aid = make_agent(api)
    r = put(api, aid, **body)
    assert r.status_code == 400, r.body
    assert r.json["field"] == field and words in r.json["message"], r.json


def test_jitter_up_to_the_interval_is_allowed(api):
    aid = make_agent(api)
    assert put(api, aid, expression="0 * * * *", jitterSeconds=3000).status_code == 200
    assert put(api, aid, expression="rate(1 hour)", jitterSeconds=3600).status_code == 200


def test_at_runs_once_on_its_second_then_shows_no_next_run(api, system, clock):
    aid = make_agent(api)
    s = put(api, aid, expression="at(2026-03-02T13:00:30)", timezone="Europe/Paris").json  # 12:00:30 UTC
    assert s["nextRunAt"] == "2026-03-02T13:00:30+01:00" and s["nextRuns"] == ["2026-03-02T13:00:30+01:00"]
    sent = take(system)  # inside the lookahead: planned and sent when saved
    assert len(sent) == 1 and sent[0].delay_seconds == 59
    clock.advance(59.5)
    system.dispatcher.tick()  # a tick meanwhile creates nothing more
    assert take(system) == []
    assert work(system, sent) == ["succeeded"]
    [run] = api.get(f"/api/agents/{aid}/sessions").json["items"]
    assert run["startedAt"] == run["scheduledFor"] == "2026-03-02T12:00:30+00:00"
    after = api.get(f"/api/agents/{aid}/schedule").json
    assert after["nextRunAt"] is None and after["nextRuns"] == []
    clock.advance(3600)
    system.dispatcher.tick()
    assert take(system) == [] and len(api.get(f"/api/agents/{aid}/sessions").json["items"]) == 1


def test_excluded_dates_are_skipped_in_the_ledger_and_left_out_of_next_runs(api, system, clock):
    aid = make_agent(api)
    s = put(api, aid, expression="0 12 * * *", excludeDates=["2026-03-02", "2026-03-04"]).json
    assert s["excludeDates"] == ["2026-03-02", "2026-03-04"]
    assert s["nextRunAt"] == "2026-03-03T12:00:00+00:00"
    assert s["nextRuns"][:3] == ["2026-03-03T12:00:00+00:00", "2026-03-05T12:00:00+00:00", "2026-03-06T12:00:00+00:00"]
    clock.advance(60)
    system.dispatcher.tick()
    assert take(system) == []
    items = ledger(api, aid, "2026-03-02T00:00:00Z", "2026-03-05T00:00:00Z")
    assert [(i["fireTime"][:10], i["outcome"], i.get("reason")) for i in items] == [
        ("2026-03-02", "SKIPPED", "EXCLUDED_DATE"), ("2026-03-03", "UPCOMING", None), ("2026-03-04", "SKIPPED", "EXCLUDED_DATE")]
    v = api.post("/api/schedules/validate", {"expression": "0 12 * * *", "excludeDates": ["2026-03-03"], "count": 2,
                                             "from": "2026-03-02T00:00:00Z"})
    assert v.json["nextRuns"] == ["2026-03-02T12:00:00+00:00", "2026-03-04T12:00:00+00:00"]


def test_validate_takes_either_field_and_warns_about_daily_rates_across_dst(api):
    v = api.post("/api/schedules/validate", {"expression": "rate(1 day)", "timezone": "America/New_York",
                                             "from": "2026-03-06T09:00:00-05:00", "count": 3}).json
    assert v["expression"] == v["cronExpression"] == "rate(1 day)"
    assert v["nextRuns"] == ["2026-03-07T09:00:00-05:00", "2026-03-08T10:00:00-04:00", "2026-03-09T10:00:00-04:00"]
    assert any("2026-03-08" in w for w in v["warnings"])
    at = api.post("/api/schedules/validate", {"cronExpression": "at(2026-03-01T00:00:00)"})
    assert at.status_code == 400 and at.json["field"] == "cronExpression"


def test_rate_and_at_schedules_take_part_in_hot_minutes(api, system):
    ids = [make_agent(api, f"r{i}") for i in range(5)]
    for aid in ids[:4]:
        assert put(api, aid, expression="rate(1 hour)", startAt="2026-03-02T13:00:00Z").status_code == 200
    assert put(api, ids[4], expression="at(2026-03-02T14:00:00)").status_code == 200
    r = api.get("/api/schedules/conflicts?from=2026-03-02T12:00:00Z&hours=6").json
    hot = [c for c in r["conflicts"] if c["type"] == "HOT_MINUTE"]
    assert hot and sorted(hot[0]["agentIds"]) == sorted(ids) and hot[0]["at"] == "2026-03-02T14:00:00+00:00"


# --- backfill ----------------------------------------------------------------------------------
def test_backfill_runs_each_missing_fire_once_and_again_creates_nothing(api, system, clock):
    aid = make_agent(api)
    put(api, aid, expression="0 * * * *", catchup="NONE")
    clock.advance(5 * 3600)  # 16:59:30, no tick ran: 13:00..16:00 have no session (12:00 was planned at save)
    window = {"from": "2026-03-02T12:00:00Z", "to": "2026-03-02T16:59:00Z"}
    r = api.post(f"/api/agents/{aid}/backfill", window)
    assert r.status_code == 202, r.body
    assert r.json["created"] == 4 and r.json["skipped"] == 1 and len(r.json["sessionIds"]) == 4
    again = api.post(f"/api/agents/{aid}/backfill", window).json
    assert again == {"created": 0, "skipped": 5, "sessionIds": []}
    system.dispatcher.tick()  # the tick reaches the same fires: it skips them but cannot replace the runs
    drain(system)
    items = ledger(api, aid, "2026-03-02T13:00:00Z", "2026-03-02T16:59:00Z")
    assert [i["outcome"] for i in items] == ["SUCCEEDED"] * 4
    assert {i["sessionId"] for i in items} == set(r.json["sessionIds"])
    runs = api.get(f"/api/agents/{aid}/sessions?limit=100").json["items"]
    assert sorted(s["scheduledFor"] for s in runs if s["trigger"] == "BACKFILL") == [
        f"2026-03-02T{h}:00:00+00:00" for h in (13, 14, 15, 16)]
    assert all(s["status"] == "SUCCEEDED" for s in runs if s["trigger"] == "BACKFILL")


def test_backfill_runs_fires_the_tick_skipped(api, system, clock):
    aid = make_agent(api)
    put(api, aid, expression="*/10 * * * *", catchup="NONE")
    clock.advance(3600)  # 12:59:30: the tick records 12:00..12:50 SKIPPED (missed, catch-up NONE)
    system.dispatcher.tick()
    assert [i["outcome"] for i in ledger(api, aid, "2026-03-02T12:10:00Z", "2026-03-02T12:40:00Z")] == ["SKIPPED"] * 3
    r = api.post(f"/api/agents/{aid}/backfill", {"from": "2026-03-02T12:10:00Z", "to": "2026-03-02T12:40:00Z",
                                                 "priority": "LOW"}).json
    assert r["created"] == 3
    drain(system)
    assert [i["outcome"] for i in ledger(api, aid, "2026-03-02T12:10:00Z", "2026-03-02T12:40:00Z")] == ["SUCCEEDED"] * 3


@pytest.mark.parametrize("body,status,field", [
    ({"from": "2026-03-02T12:00:00Z", "to": "2026-03-02T11:00:00Z"}, 400, "to"),
    ({"from": "2026-03-02T09:00:00Z", "to": "2026-03-03T11:00:00Z"}, 400, "to"),  # in the future
    ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-02T11:00:00Z"}, 400, "to"),  # more than 31 days
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-02T11:00:00Z", "maxRuns": 5}, 400, "maxRuns"),
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-02T11:00:00Z", "maxRuns": 1001}, 400, "maxRuns"),
    ({"from": "2026-03-02T00:00:00Z"}, 400, "to"),
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-02T11:00:00Z", "extra": 1}, 400, "extra"),
])
def test_backfill_bounds(api, body, status, field):
    aid = make_agent(api)
    put(api, aid, expression="0 * * * *")
    r = api.post(f"/api/agents/{aid}/backfill", body)
    assert r.status_code == status and r.json["field"] == field, r.json


def test_backfill_without_a_schedule_is_404_and_another_tenants_agent_too(api, other_api):
    aid = make_agent(api)
    body = {"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T11:00:00Z"}
    assert api.post(f"/api/agents/{aid}/backfill", body).status_code == 404
    put(api, aid, expression="0 * * * *")
    assert other_api.post(f"/api/agents/{aid}/backfill", body).status_code == 404


# --- history -----------------------------------------------------------------------------------
def test_every_route_records_a_version_newest_first(api, system, monkeypatch):
    events = []
    monkeypatch.setattr(system.events, "publish", lambda tenant, agent, payload: events.append((tenant, payload)))
    aid = make_agent(api)
    assert put(api, aid, expression="0 * * * *").json["version"] == 1
    assert put(api, aid, expression="rate(5 minutes)").json["version"] == 2
    ops = lambda action: {"operations": [{"agentId": aid, "action": action}]}  # noqa: E731
    assert api.post("/api/schedules/bulk", ops("disable")).json["results"][0]["ok"]
    assert api.post("/api/schedules/bulk", ops("enable")).json["results"][0]["ok"]
    patched = api.patch(f"/api/agents/{aid}", {"schedule": {"expression": "@daily", "timezone": "Europe/Paris"}})
    assert patched.status_code == 200 and patched.json["schedule"]["version"] == 5
    assert api.patch(f"/api/agents/{aid}", {"name": "renamed"}).json["schedule"]["version"] == 5  # not a change
    assert api.delete(f"/api/agents/{aid}/schedule").status_code == 204
    h = api.get(f"/api/agents/{aid}/schedule/history").json
    assert [(i["version"], i["action"]) for i in h["items"]] == [
        (6, "DELETED"), (5, "UPDATED"), (4, "ENABLED"), (3, "DISABLED"), (2, "UPDATED"), (1, "CREATED")]
    assert {i["changedBy"] for i in h["items"]} == {"tenant-a"}
    assert h["items"][0]["schedule"]["expression"] == "@daily" and h["items"][-1]["schedule"]["expression"] == "0 * * * *"
    assert h["items"][3]["schedule"]["enabled"] is False
    assert [(p["event"], p["data"]["version"], p["data"]["action"]) for _, p in events] == [
        ("schedule:changed", 1, "CREATED"), ("schedule:changed", 2, "UPDATED"), ("schedule:changed", 3, "DISABLED"),
        ("schedule:changed", 4, "ENABLED"), ("schedule:changed", 5, "UPDATED"), ("schedule:changed", 6, "DELETED")]
    page1 = api.get(f"/api/agents/{aid}/schedule/history?limit=4").json
    page2 = api.get(f"/api/agents/{aid}/schedule/history?limit=4&nextToken={page1['nextToken']}").json
    assert [i["version"] for i in page1["items"] + page2["items"]] == [6, 5, 4, 3, 2, 1]
    assert put(api, aid, expression="@hourly").json["version"] == 7  # numbering goes on after a delete


def test_history_is_private_and_goes_with_the_agent(api, other_api, system):
    aid = make_agent(api)
    put(api, aid, expression="@hourly")
    assert other_api.get(f"/api/agents/{aid}/schedule/history").status_code == 404
    assert api.get("/api/agents").json["items"][0]["id"] == aid  # history items never show as agents
    assert api.delete(f"/api/agents/{aid}").status_code == 204
    assert list(ScheduleHistoryModel.query(history_pk(aid))) == []


def test_a_change_and_its_history_land_together_or_not_at_all(api, system):
    aid = make_agent(api)
    put(api, aid, expression="@hourly")
    svc = system.agent_service
    stale = svc.get_agent("tenant-a", aid)
    put(api, aid, expression="@daily")  # version 2 lands meanwhile
    changed = stale.with_(schedule=stale.schedule.__class__(**{**stale.schedule.__dict__, "priority": stale.schedule.priority.__class__.LOW}))
    with pytest.raises(ConditionFailed):  # the write that lost the race records nothing
        svc._save(changed, must_exist=True, expected=stale, saved=True)
    assert [i["version"] for i in api.get(f"/api/agents/{aid}/schedule/history").json["items"]] == [2, 1]
    # A history item that cannot be written (its version is taken) stops the schedule change too.
    fresh = svc.get_agent("tenant-a", aid)
    ScheduleHistoryModel(history_pk(aid), version_key(3), owner="tenant-a", version=3, changed_at=0, changed_by="x",
                         action="UPDATED", schedule={}).save()
    with pytest.raises(ConditionFailed):
        svc._save(fresh.with_(schedule=None, next_run_at=None), must_exist=True, expected=fresh)
    after = svc.get_agent("tenant-a", aid)
    assert after.schedule is not None and after.schedule.cron_expression == "@daily" and after.schedule_version == 2
