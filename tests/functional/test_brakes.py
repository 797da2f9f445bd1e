"""Flow control and brakes on moto: rate-limited waits, usage, budgets, pauseAfterFailures,
pausedUntil, overlap CANCEL_PREVIOUS and bulk cancel."""
from __future__ import annotations

import json
import threading

import pytest

from tests.functional.helpers import QuietHandler, base_url, drain, local_server, take, work
from tests.functional.test_dispatch import make_agent, schedule
from tests.functional.test_worker import retry_round, run_now, session


def events(api, name):
    return [e for e in api.get("/api/events?since=0&limit=500").json["items"] if e["event"] == name]


def ledger(api, aid, start, end):
    r = api.get(f"/api/agents/{aid}/fires?from={start}&to={end}")
    assert r.status_code == 200, r.body
    return r.json["items"]


# --- a provider that answers 429 once, then 200 with usage ------------------------------------
class RateLimitedThenOk(QuietHandler):
    answers: list = []

    def do_GET(self):
        code, headers, body = self.answers.pop(0) if self.answers else (200, {}, {"ok": True})
        self.reply(code, json.dumps(body).encode(), {**headers, "Content-Type": "application/json"})


@pytest.fixture
def provider():
    RateLimitedThenOk.answers = []
    with local_server(RateLimitedThenOk) as server:
        yield base_url(server), RateLimitedThenOk.answers


USAGE = {"inputTokens": 1200, "outputTokens": 300, "costUsd": 0.042}


def test_http_429_waits_retry_after_without_using_a_retry_then_usage_is_recorded(api, system, clock, provider):
    url, answers = provider
    answers += [(429, {"Retry-After": "3"}, {"error": "slow down"}),
                (200, {}, {"answer": 42, "usage": USAGE})]
    system.worker.rand = lambda: 0.0
    aid = make_agent(api, kind="http", config={"url": f"{url}/chat"}, maxRetries=0,
                     budget={"maxCostUsdPerDay": 5, "timezone": "Europe/Paris"})
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["RATE_LIMITED"]
    s = session(api, aid, sid)
    assert s["status"] == "RETRYING" and s["rateLimitedWaits"] == 1 and s["error"]["category"] == "RATE_LIMITED"
    sent, out = retry_round(system, clock)
    assert sent[0].delay_seconds in (2, 3) and out == ["succeeded"]  # sent with a second of slack
    s = session(api, aid, sid)
    # maxRetries 0: the second attempt happened only because the wait used no retry
    assert s["status"] == "SUCCEEDED" and s["attempt"] == 2 and s["rateLimitedWaits"] == 1
    assert s["usage"] == USAGE and s["output"]["body"]["answer"] == 42
    agent = api.get(f"/api/agents/{aid}").json
    assert agent["budgetUsage"]["day"] == "2026-03-02" and agent["budgetUsage"]["runs"] == 1
    assert agent["budgetUsage"]["costUsd"] == pytest.approx(0.042)


def test_rate_limited_waits_are_bounded_then_count_as_transient(api, system, clock, provider, settings_overrides):
    url, answers = provider
    answers += [(429, {"Retry-After": "1"}, {})] * 4
    system.worker.rand = lambda: 0.0
    aid = make_agent(api, kind="http", config={"url": f"{url}/x"}, maxRetries=0)
    sid = run_now(api, aid)
    results = [work(system, take(system))[0]]
    for _ in range(system.settings.max_rate_limited_waits + 1):
        if session(api, aid, sid)["status"] != "RETRYING":
            break
        results += retry_round(system, clock)[1]
    s = session(api, aid, sid)
    # four 429s (all waits, the default allows ten), then the fifth attempt is the 200
    assert s["status"] == "SUCCEEDED" and s["rateLimitedWaits"] == 4 and s["attempt"] == 5


@pytest.mark.parametrize("settings_overrides", [{"max_rate_limited_waits": 1}])
def test_once_the_waits_are_used_a_429_uses_retries(api, system, clock, provider):
    url, answers = provider
    answers += [(429, {"Retry-After": "1"}, {})] * 3
    system.worker.rand = lambda: 0.0
    aid = make_agent(api, kind="http", config={"url": f"{url}/x"}, maxRetries=1)
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["RATE_LIMITED"]  # wait 1 (the only one allowed)
    retry_round(system, clock)  # a 429 again: TRANSIENT now, the one retry is used
    s = session(api, aid, sid)
    assert s["status"] == "RETRYING" and s["error"]["category"] == "TRANSIENT" and s["rateLimitedWaits"] == 1
    retry_round(system, clock)  # a third 429: no retry left
    s = session(api, aid, sid)
    assert s["status"] == "DEAD" and s["attempt"] == 3


# --- usage from echo ---------------------------------------------------------------------------
def test_echo_reports_config_usage_and_bad_usage_is_a_400(api, system):
    aid = make_agent(api, config={"usage": {"inputTokens": 5, "costUsd": 0.5}})
    sid = run_now(api, aid)
    assert drain(system) == ["succeeded"]
    assert session(api, aid, sid)["usage"] == {"inputTokens": 5, "costUsd": 0.5}
    bad = api.post("/api/agents", {"name": "b", "kind": "echo", "config": {"usage": {"inputTokens": -1}}})
    assert bad.status_code == 400 and bad.json["field"] == "config.usage.inputTokens"
    plain = make_agent(api, "plain")
    sid = run_now(api, plain)
    drain(system)
    assert session(api, plain, sid)["usage"] is None and session(api, plain, sid)["rateLimitedWaits"] == 0


# --- budgets ---------------------------------------------------------------------------------------
def test_budget_counters_are_exact_under_concurrent_finishes(api, system):
    aid = make_agent(api, config={"usage": {"costUsd": 0.1}}, budget={"maxRunsPerDay": 1000})
    for _ in range(5):  # the global cap (5): all admitted at once
        run_now(api, aid)
    sent = take(system)
    assert len(sent) == 5
    out: list = []
    threads = [threading.Thread(target=lambda s=s: out.append(system.worker.handle(s.body))) for s in sent]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["succeeded"] * 5
    usage = api.get(f"/api/agents/{aid}").json["budgetUsage"]
    assert usage["runs"] == 5 and usage["costUsd"] == pytest.approx(0.5)


def test_budget_skips_the_days_later_fires_and_refuses_run_now(api, system, clock):
    aid = make_agent(api, budget={"maxRunsPerDay": 1})
    schedule(api, aid, "* * * * *")
    assert drain(system) == ["succeeded"]  # 12:00 runs: the day's one run
    clock.advance(60)
    system.dispatcher.tick()  # 12:01: skipped
    assert take(system) == []
    items = ledger(api, aid, "2026-03-02T12:00:00Z", "2026-03-02T12:02:00Z")
    assert [(i["outcome"], i.get("reason")) for i in items] == [("SUCCEEDED", None), ("SKIPPED", "BUDGET_EXHAUSTED")]
    skipped = events(api, "agent:skipped")
    assert skipped and skipped[-1]["data"]["reason"] == "BUDGET_EXHAUSTED"
    r = api.post(f"/api/agents/{aid}/run", {})
    assert r.status_code == 429 and r.json["code"] == "BUDGET_EXHAUSTED" and r.json["day"] == "2026-03-02"
    assert api.get(f"/api/agents/{aid}").json["budgetUsage"] == {
        "day": "2026-03-02", "runs": 1, "runtimeSeconds": 0, "costUsd": 0}
    # the next UTC day starts afresh
    clock.advance(12 * 3600)
    assert api.post(f"/api/agents/{aid}/run", {}).status_code == 202


def test_budget_pause_disables_the_schedule_until_someone_enables_it(api, system, clock):
    aid = make_agent(api, budget={"maxRunsPerDay": 1, "onExhausted": "PAUSE"})
    schedule(api, aid, "* * * * *")
    assert drain(system) == ["succeeded"]
    s = api.get(f"/api/agents/{aid}/schedule").json
    assert s["enabled"] is False and s["disabledReason"] == "BUDGET_EXHAUSTED" and s["nextRuns"] == []
    hist = api.get(f"/api/agents/{aid}/schedule/history").json["items"]
    assert hist[0]["action"] == "DISABLED" and hist[0]["changedBy"] == "system"
    r = api.post("/api/schedules/bulk", {"operations": [{"agentId": aid, "action": "enable"}]})
    assert r.status_code == 200
    s = api.get(f"/api/agents/{aid}/schedule").json
    assert s["enabled"] is True and s["disabledReason"] is None


def test_budget_fields_are_validated_and_null_removes(api):
    for body, field in [({"budget": {}}, "budget"), ({"budget": {"maxRunsPerDay": 0}}, "budget.maxRunsPerDay"),
                        ({"budget": {"maxRunsPerDay": 1, "timezone": "Nowhere/City"}}, "budget.timezone"),
                        ({"budget": {"maxRunsPerDay": 1, "onExhausted": "STOP"}}, "budget.onExhausted"),
                        ({"budget": {"maxCostUsdPerDay": "a lot"}}, "budget.maxCostUsdPerDay"),
                        ({"pauseAfterFailures": 0}, "pauseAfterFailures"),
                        ({"pauseAfterFailures": 101}, "pauseAfterFailures")]:
        r = api.post("/api/agents", {"name": "x", "kind": "echo", **body})
        assert r.status_code == 400 and r.json["field"] == field, (body, r.json)
    aid = make_agent(api, budget={"maxRunsPerDay": 3}, pauseAfterFailures=2)
    a = api.get(f"/api/agents/{aid}").json
    assert a["budget"] == {"maxRunsPerDay": 3, "timezone": "UTC", "onExhausted": "SKIP"} and a["pauseAfterFailures"] == 2
    assert a["budgetUsage"] == {"day": "2026-03-02", "runs": 0, "runtimeSeconds": 0, "costUsd": 0}
    a = api.patch(f"/api/agents/{aid}", {"budget": None, "pauseAfterFailures": None}).json
    assert a["budget"] is None and a["pauseAfterFailures"] is None
    assert api.get(f"/api/agents/{aid}").json["budgetUsage"] is None


# --- pauseAfterFailures ---------------------------------------------------------------------------------
def test_consecutive_dead_runs_disable_the_schedule_by_system(api, system, clock):
    aid = make_agent(api, kind="fail", config={"category": "PERMANENT"}, pauseAfterFailures=2)
    schedule(api, aid, "30 * * * *")
    run_now(api, aid)
    assert drain(system) == ["PERMANENT"]
    assert api.get(f"/api/agents/{aid}/schedule").json["enabled"] is True
    run_now(api, aid)
    assert drain(system) == ["PERMANENT"]
    s = api.get(f"/api/agents/{aid}/schedule").json
    assert s["enabled"] is False and s["disabledReason"] == "CONSECUTIVE_FAILURES"
    hist = api.get(f"/api/agents/{aid}/schedule/history").json["items"]
    assert hist[0]["action"] == "DISABLED" and hist[0]["changedBy"] == "system"
    changed = events(api, "schedule:changed")
    assert changed[-1]["data"]["action"] == "DISABLED" and changed[-1]["data"]["changedBy"] == "system"
    assert any("pauseAfterFailures" in e["data"]["message"] for e in events(api, "agent:alert"))
    api.post("/api/schedules/bulk", {"operations": [{"agentId": aid, "action": "enable"}]})
    assert api.get(f"/api/agents/{aid}/schedule").json["disabledReason"] is None


def test_a_success_resets_the_count(api, system, clock):
    aid = make_agent(api, kind="fail", config={"category": "PERMANENT"}, pauseAfterFailures=2)
    schedule(api, aid, "30 * * * *")
    run_now(api, aid)
    assert drain(system) == ["PERMANENT"]
    api.patch(f"/api/agents/{aid}", {"kind": "echo", "config": {}})
    run_now(api, aid)
    assert drain(system) == ["succeeded"]
    api.patch(f"/api/agents/{aid}", {"kind": "fail", "config": {"category": "PERMANENT"}})
    run_now(api, aid)
    assert drain(system) == ["PERMANENT"]
    assert api.get(f"/api/agents/{aid}/schedule").json["enabled"] is True  # 1 in a row, not 2
    run_now(api, aid)
    assert drain(system) == ["PERMANENT"]
    assert api.get(f"/api/agents/{aid}/schedule").json["disabledReason"] == "CONSECUTIVE_FAILURES"


# --- pausedUntil -------------------------------------------------------------------------------------------
def test_paused_until_skips_fires_before_it_and_resumes_by_itself(api, system, clock):
    aid = make_agent(api)
    s = schedule(api, aid, "* * * * *", pausedUntil="2026-03-02T12:02:00Z")
    assert s["pausedUntil"] == "2026-03-02T12:02:00+00:00"
    assert s["nextRunAt"] == "2026-03-02T12:02:00+00:00" and s["nextRuns"][0] == "2026-03-02T12:02:00+00:00"
    for _ in range(3):
        system.dispatcher.tick()
        drain(system)
        clock.advance(60)
    items = ledger(api, aid, "2026-03-02T12:00:00Z", "2026-03-02T12:03:00Z")
    assert [(i["outcome"], i.get("reason")) for i in items] == [
        ("SKIPPED", "PAUSED"), ("SKIPPED", "PAUSED"), ("SUCCEEDED", None)]
    bad = api.post(f"/api/agents/{aid}/schedule", {"cronExpression": "* * * * *", "pausedUntil": "soon"})
    assert bad.status_code == 400 and bad.json["field"] == "pausedUntil"
    s = schedule(api, aid, "* * * * *", pausedUntil=None)
    assert s["pausedUntil"] is None


# --- overlap CANCEL_PREVIOUS -------------------------------------------------------------------------------
def test_cancel_previous_cancels_the_earlier_run_and_starts(api, system, clock):
    aid = make_agent(api)
    schedule(api, aid, "* * * * *", overlapPolicy="CANCEL_PREVIOUS")
    first = take(system)  # 12:00, admitted and sent, never delivered (say its worker is slow to come)
    assert len(first) == 1
    clock.advance(60)
    system.dispatcher.tick()
    second = take(system)
    assert len(second) == 1 and second[0].body.get("o") == 1
    clock.advance(30)
    assert work(system, second) == ["succeeded"]
    runs = {r["scheduledFor"]: r for r in api.get(f"/api/agents/{aid}/sessions").json["items"]}
    assert runs["2026-03-02T12:00:00+00:00"]["status"] == "CANCELLED"
    assert runs["2026-03-02T12:01:00+00:00"]["status"] == "SUCCEEDED"
    assert work(system, first) == ["duplicate"]  # the cancelled run never starts


# --- bulk cancel ----------------------------------------------------------------------------------------------
def test_bulk_cancel_touches_only_the_callers_runs(api, other_api, system, clock):
    system.dispatcher.set_paused(True)  # runs stay queued
    a1, a2 = make_agent(api, "a1"), make_agent(api, "a2")
    b1 = make_agent(other_api, "b1")
    s1, s2, s3 = run_now(api, a1), run_now(api, a1), run_now(api, a2)
    sb = run_now(other_api, b1)
    assert api.post("/api/sessions/cancel", {}).status_code == 400
    r = api.post("/api/sessions/cancel", {"agentIds": [b1]})  # another tenant's agent is not the caller's
    assert r.status_code == 400 and r.json["field"] == "agentIds"
    assert api.post("/api/sessions/cancel", {"agentIds": [a1], "statuses": ["DONE"]}).json["field"] == "statuses[0]"
    r = api.post("/api/sessions/cancel", {"agentIds": [a1]})
    assert r.status_code == 202 and r.json == {"cancelled": 2}
    assert session(api, a1, s1)["status"] == session(api, a1, s2)["status"] == "CANCELLED"
    assert session(api, a2, s3)["status"] == "QUEUED"
    clock.advance(1)
    r = api.post("/api/sessions/cancel", {"scheduledBefore": "2026-03-02T12:00:00Z", "statuses": ["QUEUED"]})
    assert r.json == {"cancelled": 1} and session(api, a2, s3)["status"] == "CANCELLED"
    assert session(other_api, b1, sb)["status"] == "QUEUED"


def test_cancel_previous_asks_a_running_run_to_stop(api, system, clock):
    aid = make_agent(api)
    schedule(api, aid, "* * * * *", overlapPolicy="CANCEL_PREVIOUS")
    [first] = take(system)
    clock.advance(30)
    # a worker has claimed the 12:00 run and is still running it
    sid = first.body["s"]
    now = clock.now().timestamp()
    assert system.runs.claim(aid, sid, 1, "token-of-the-first-worker", now, now + 600).ok
    clock.advance(30)
    system.dispatcher.tick()
    [second] = take(system)
    assert work(system, [second]) == ["succeeded"]
    earlier = system.runs.get(aid, sid)
    assert earlier.status.value == "RUNNING" and earlier.cancel_requested  # it stops at its next check


def test_bulk_cancel_counts_a_running_run_once(api, system, clock):
    aid = make_agent(api)
    sid = run_now(api, aid)
    [msg] = take(system)
    now = clock.now().timestamp()
    assert system.runs.claim(aid, sid, 1, "token-of-a-slow-worker", now, now + 600).ok
    r = api.post("/api/sessions/cancel", {"agentIds": [aid]})
    assert r.status_code == 202 and r.json == {"cancelled": 1}
    assert system.runs.get(aid, sid).cancel_requested
    # Asked again before its worker notices: it is already stopping, so nothing more is cancelled.
    assert api.post("/api/sessions/cancel", {"agentIds": [aid]}).json == {"cancelled": 0}
