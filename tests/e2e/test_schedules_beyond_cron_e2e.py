"""rate() and at() schedules and backfill through the local system (`make run`), on its real clock.

Like the minute schedule in test_local_system.py, these wait for real fires, so every fire is
chosen a few seconds ahead of the moment the schedule is saved (not a minute boundary): the
whole module waits about twenty seconds of wall time. Times are compared with the values the
system itself reports (``scheduledFor``, ``startedAt``), never with the test's own clock.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import TICK_SECONDS
from tests.e2e.test_local_system import create_agent, subscribe, ts

pytestmark = pytest.mark.e2e

LEAD_SECONDS = 6  # a fire this far after the save: admitted ahead of time by the save itself


def whole_second(seconds_ahead: float) -> datetime:
    return datetime.fromtimestamp(int(time.time() + seconds_ahead), tz=timezone.utc)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_an_at_schedule_runs_once_on_its_second_then_shows_no_next_run(system):
    api = system.http(system.token)
    agent = create_agent(api, name="at once", kind="echo", config={"message": "once"})
    events = system.ws(system.token)
    subscribe(events, [agent["id"]])

    fire = whole_second(LEAD_SECONDS)
    wall = fire.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None).isoformat()
    r = api.post(f"/api/agents/{agent['id']}/schedule", json={"expression": f"at({wall})", "timezone": "Europe/Paris"})
    assert r.status_code == 200, r.text
    saved = r.json()
    assert ts(saved["nextRunAt"]) == fire.timestamp() and [ts(t) for t in saved["nextRuns"]] == [fire.timestamp()]

    started = events.expect("agent:started", timeout=LEAD_SECONDS + 10)
    data = started["data"]
    assert ts(data["scheduledFor"]) == fire.timestamp() and data["trigger"] == "SCHEDULE"
    assert 0 <= ts(data["startedAt"]) - fire.timestamp() <= 1.0, data
    events.expect("agent:completed", timeout=10, sessionId=data["sessionId"])

    after = api.get(f"/api/agents/{agent['id']}/schedule").json()
    assert after["nextRunAt"] is None and after["nextRuns"] == []
    assert after["expression"] == after["cronExpression"] == f"at({wall})"
    # Two more ticks: nothing else starts, and the one run is the only session.
    extra = [e for e in events.drain(2 * TICK_SECONDS + 1) if e.get("event") == "agent:started"]
    assert extra == []
    runs = api.get(f"/api/agents/{agent['id']}/sessions").json()["items"]
    assert [(s["sessionId"], s["status"]) for s in runs] == [(data["sessionId"], "SUCCEEDED")]


def test_a_rate_schedule_fires_at_its_anchor_and_plans_the_next_fires_from_it(system):
    api = system.http(system.token)
    agent = create_agent(api, name="rate", kind="echo", config={"message": "rate"})
    events = system.ws(system.token)
    subscribe(events, [agent["id"]])

    anchor = whole_second(LEAD_SECONDS)
    body = {"expression": "rate(2 minutes)", "startAt": iso(anchor), "timezone": "America/New_York"}
    r = api.post(f"/api/agents/{agent['id']}/schedule", json=body)
    assert r.status_code == 200, r.text
    expected = [anchor.timestamp() + k * 120 for k in range(len(r.json()["nextRuns"]))]
    assert len(expected) >= 3 and [ts(t) for t in r.json()["nextRuns"]] == expected
    # Saving the same expression again keeps the anchor.
    again = api.post(f"/api/agents/{agent['id']}/schedule", json={**body, "priority": "HIGH"}).json()
    assert [ts(t) for t in again["nextRuns"]] == expected

    started = events.expect("agent:started", timeout=LEAD_SECONDS + 10)["data"]
    assert ts(started["scheduledFor"]) == anchor.timestamp() and started["trigger"] == "SCHEDULE"
    assert 0 <= ts(started["startedAt"]) - anchor.timestamp() <= 1.0, started
    after = api.get(f"/api/agents/{agent['id']}/schedule").json()
    assert ts(after["nextRunAt"]) == anchor.timestamp() + 120
    assert [ts(t) for t in after["nextRuns"]] == [anchor.timestamp() + k * 120 for k in range(1, len(after["nextRuns"]) + 1)]


def test_a_backfill_runs_the_missing_fires_once_and_repeated_creates_nothing(system):
    api = system.http(system.token)
    agent = create_agent(api, name="backfilled", kind="echo", config={"message": "backfill"})
    events = system.ws(system.token)
    subscribe(events, [agent["id"]])
    # disabled: only the backfill runs it (a backfill reads the schedule, enabled or not)
    r = api.post(f"/api/agents/{agent['id']}/schedule", json={"expression": "0 */6 * * *", "enabled": False})
    assert r.status_code == 200, r.text

    now = whole_second(0)
    window = {"from": iso(now - timedelta(days=1)), "to": iso(now)}
    first = api.post(f"/api/agents/{agent['id']}/backfill", json=window)
    assert first.status_code == 202, first.text
    created = first.json()
    assert created["created"] == 4 and created["skipped"] == 0 and len(set(created["sessionIds"])) == 4

    for _ in range(3):  # while the first runs go on, and after: nothing new
        again = api.post(f"/api/agents/{agent['id']}/backfill", json=window)
        assert again.status_code == 202, again.text
        assert again.json() == {"created": 0, "skipped": 4, "sessionIds": []}

    done = {e["data"]["sessionId"] for e in events.seen if e.get("event") == "agent:completed"}
    while done < set(created["sessionIds"]):
        e = events.next(lambda e: e.get("event") == "agent:completed", timeout=20, what="the backfilled runs ending")
        done.add(e["data"]["sessionId"])
    assert done == set(created["sessionIds"])
    runs = api.get(f"/api/agents/{agent['id']}/sessions", params={"limit": 100}).json()["items"]
    assert sorted(s["sessionId"] for s in runs) == sorted(done)
    assert {(s["trigger"], s["status"]) for s in runs} == {("BACKFILL", "SUCCEEDED")}
    fires = sorted(ts(s["scheduledFor"]) for s in runs)
    assert all(f % (6 * 3600) == 0 for f in fires) and fires[-1] - fires[0] == 18 * 3600
