"""The CLI's flow-control commands and views: pools, bulk cancel, secret rotation, and how
limits, budgets, usage and waiting are put in words (no server: a recording MockTransport)."""
from __future__ import annotations

import json

import httpx
import pytest
import typer
from typer.testing import CliRunner

from agent_scheduler.cli.main import Deps, app, parse_throttle
from agent_scheduler.cli.output import (
    budget_text,
    budget_usage_text,
    pool_row,
    progress_text,
    throttle_text,
    usage_text,
)

TOKEN = "tok-flow-secret-marker"
AGENT = {"id": "ag_" + "1" * 20, "name": "report", "kind": "webhook", "config": {}, "schedule": None,
         "maxConcurrency": 2, "throttle": {"limit": 10, "periodSeconds": 60}, "pools": ["openai", "gpu"],
         "budget": {"maxRunsPerDay": 10, "maxCostUsdPerDay": 5.0, "timezone": "Europe/Paris", "onExhausted": "PAUSE"},
         "budgetUsage": {"day": "2026-03-02", "runs": 3, "runtimeSeconds": 40, "costUsd": 0.12},
         "pauseAfterFailures": 3, "heartbeatSeconds": None}
runner = CliRunner(env={"COLUMNS": "240"})


class Recorder:
    def __init__(self, answers: dict[tuple[str, str], httpx.Response]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key in self.answers:
            return self.answers[key]
        if key == ("GET", "/api/agents"):
            return httpx.Response(200, json={"items": [AGENT], "nextToken": None})
        return httpx.Response(404, json={"code": "NOT_FOUND", "message": f"{key} not here"})

    def bodies(self, method: str, path: str) -> list:
        return [json.loads(r.content or b"null") for r in self.requests if (r.method, r.url.path) == (method, path)]


def invoke(rec: Recorder, *args: str):
    result = runner.invoke(app, ["--url", "http://api.test/api", "--token", TOKEN, *args],
                           obj=Deps(transport=httpx.MockTransport(rec), env={}))
    assert TOKEN not in result.output
    return result


@pytest.mark.parametrize("text,expected", [
    ("10/60s", {"limit": 10, "periodSeconds": 60}), ("10/60", {"limit": 10, "periodSeconds": 60}),
    ("5/1m", {"limit": 5, "periodSeconds": 60}), (" 100 / 2h ", {"limit": 100, "periodSeconds": 7200}),
    ("1000/1d", {"limit": 1000, "periodSeconds": 86400}),
])
def test_throttle_is_limit_per_period(text, expected):
    assert parse_throttle(text) == expected


@pytest.mark.parametrize("text", ["10", "10/", "/60s", "ten/60s", "10/60w", "-1/60s"])
def test_a_throttle_that_is_not_limit_per_period_is_refused(text):
    with pytest.raises(typer.BadParameter):
        parse_throttle(text)


def test_limits_budget_usage_and_progress_in_words():
    assert throttle_text({"limit": 10, "periodSeconds": 60}) == "10 per 60 s"
    assert throttle_text(None) is None
    assert usage_text({"inputTokens": 1200, "outputTokens": 300, "costUsd": 0.0125}) == "1200 in / 300 out tokens, $0.0125"
    assert usage_text({"costUsd": 0.5}) == "$0.5"
    assert usage_text({"outputTokens": 7}) == "? in / 7 out tokens"
    assert usage_text(None) is None and usage_text({}) is None
    assert budget_text(AGENT["budget"]) == "10 runs, $5 per day (Europe/Paris; when used up: PAUSE)"
    assert budget_usage_text(AGENT["budgetUsage"], AGENT["budget"]) == "runs 3/10, runtime 40 s, cost $0.12/$5 (2026-03-02)"
    assert budget_usage_text(None, None) is None
    assert progress_text({"percent": 40, "message": "page 2 of 5"}) == "40% page 2 of 5"
    assert progress_text(None) is None


def test_a_pool_row_shows_running_over_limit_and_when_it_unblocks():
    row = pool_row({"name": "openai", "maxConcurrency": 4, "throttle": {"limit": 60, "periodSeconds": 60},
                    "running": 3, "blockedUntil": "2026-03-02T12:00:30+00:00"})
    assert [str(c) for c in row] == ["openai", "3/4", "60 per 60 s", "2026-03-02 12:00:30+00:00"]
    assert pool_row({"name": "free", "running": 0})[1:] == ["0/-", None, None]


def test_agents_get_shows_limits_budget_and_todays_usage():
    r = invoke(Recorder({("GET", f"/api/agents/{AGENT['id']}"): httpx.Response(200, json=AGENT)}), "agents", "get", AGENT["id"])
    assert r.exit_code == 0, r.output
    for shown in ("maxConcurrency", "10 per 60 s", "openai, gpu", "when used up: PAUSE", "runs 3/10", "pauseAfterFailures"):
        assert shown in r.stdout


def test_runs_show_says_what_a_run_waits_for_and_used():
    session = {"sessionId": "s1", "agentId": AGENT["id"], "status": "QUEUED", "waitingReason": "POOL_LIMIT",
               "waitingFor": "openai", "usage": {"inputTokens": 5, "outputTokens": 6, "costUsd": 0.01},
               "rateLimitedWaits": 2, "progress": {"percent": 50, "message": "half"}, "async": True}
    rec = Recorder({("GET", f"/api/agents/{AGENT['id']}/sessions/s1"): httpx.Response(200, json=session),
                    ("GET", f"/api/agents/{AGENT['id']}"): httpx.Response(200, json=AGENT)})
    r = invoke(rec, "runs", "show", AGENT["id"], "s1")
    assert r.exit_code == 0, r.output
    for shown in ("POOL_LIMIT (openai)", "5 in / 6 out tokens, $0.01", "rateLimitedWaits", "50% half"):
        assert shown in r.stdout
    assert json.loads(invoke(rec, "runs", "show", AGENT["id"], "s1", "--json").stdout) == session


def test_bulk_cancel_sends_the_filters_and_refuses_without_one():
    rec = Recorder({("POST", "/api/sessions/cancel"): httpx.Response(202, json={"cancelled": 4})})
    r = invoke(rec, "runs", "cancel", "--all", "--agent", "report", "--status", "queued", "--status", "RETRYING",
               "--scheduled-before", "2026-03-02T12:00:00Z", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"cancelled": 4}
    assert rec.bodies("POST", "/api/sessions/cancel") == [{"agentIds": [AGENT["id"]], "statuses": ["QUEUED", "RETRYING"],
                                                           "scheduledBefore": "2026-03-02T12:00:00+00:00"}]
    for refused in (["--all"], ["--all", "--status", "QUEUED"], ["--all", "--agent", "report", "--status", "DEAD"],
                    ["--all", "--scheduled-before", "yesterday"], ["--all", "report", "s1"], ["report"]):
        assert invoke(rec, "runs", "cancel", *refused).exit_code == 2, refused
    assert len(rec.bodies("POST", "/api/sessions/cancel")) == 1


def test_pools_set_keeps_what_it_is_not_told_and_clears_on_request():
    current = {"name": "openai", "maxConcurrency": 4, "throttle": {"limit": 60, "periodSeconds": 60}, "running": 1}
    rec = Recorder({("GET", "/api/pools/openai"): httpx.Response(200, json=current),
                    ("PUT", "/api/pools/openai"): httpx.Response(200, json=current)})
    assert invoke(rec, "pools", "set", "openai", "--max-concurrency", "8").exit_code == 0
    assert invoke(rec, "pools", "set", "openai", "--no-max-concurrency", "--throttle", "5/1s").exit_code == 0
    assert invoke(rec, "pools", "set", "openai", "--no-throttle", "--throttle", "5/1s").exit_code == 2
    assert rec.bodies("PUT", "/api/pools/openai") == [
        {"maxConcurrency": 8, "throttle": {"limit": 60, "periodSeconds": 60}},
        {"throttle": {"limit": 5, "periodSeconds": 1}},
    ]
    fresh = Recorder({("PUT", "/api/pools/new"): httpx.Response(200, json={"name": "new", "running": 0})})
    r = invoke(fresh, "pools", "set", "new", "--throttle", "1/1h")
    assert r.exit_code == 0 and "created pool new" in r.stdout
    assert fresh.bodies("PUT", "/api/pools/new") == [{"throttle": {"limit": 1, "periodSeconds": 3600}}]


def test_pools_list_is_a_table_and_a_conflicting_delete_exits_1():
    pools = {"items": [{"name": "openai", "maxConcurrency": 4, "throttle": None, "running": 4,
                        "blockedUntil": "2026-03-02T12:00:30+00:00"}]}
    rec = Recorder({("GET", "/api/pools"): httpx.Response(200, json=pools),
                    ("DELETE", "/api/pools/openai"): httpx.Response(409, json={"code": "CONFLICT", "message": "pool openai is used by agent report"})})
    r = invoke(rec, "pools", "list")
    assert r.exit_code == 0 and "4/4" in r.stdout and "2026-03-02 12:00:30+00:00" in r.stdout
    assert json.loads(invoke(rec, "pools", "list", "--json").stdout)["items"] == pools["items"]
    r = invoke(rec, "pools", "rm", "openai")
    assert r.exit_code == 1 and "CONFLICT" in r.stderr


def test_rotate_secret_prints_the_new_secret_once_and_asks_to_revoke():
    answer = {"agentId": AGENT["id"], "signingSecret": "whsec_bmV3", "previousValidUntil": None}
    rec = Recorder({("POST", f"/api/agents/{AGENT['id']}/signing-secret"): httpx.Response(200, json=answer),
                    ("GET", f"/api/agents/{AGENT['id']}"): httpx.Response(200, json=AGENT)})
    r = invoke(rec, "agents", "rotate-secret", "report", "--revoke-previous")
    assert r.exit_code == 0 and r.stdout.count("whsec_bmV3") == 1 and "no longer verifies" in r.stderr
    assert rec.bodies("POST", f"/api/agents/{AGENT['id']}/signing-secret") == [{"revokePrevious": True}]


def test_run_now_says_which_pool_holds_it():
    queued = {"sessionId": "s9", "status": "QUEUED", "waitingReason": "POOL_LIMIT", "waitingFor": "openai"}
    rec = Recorder({("POST", f"/api/agents/{AGENT['id']}/run"): httpx.Response(202, json=queued),
                    ("GET", f"/api/agents/{AGENT['id']}"): httpx.Response(200, json=AGENT)})
    r = invoke(rec, "run", "report")
    assert r.exit_code == 0 and "waiting: POOL_LIMIT openai (a pool it draws from is full" in r.stderr
