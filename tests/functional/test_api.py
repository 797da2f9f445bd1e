"""Every REST route through chalice.test.Client on moto: happy paths, tenancy, bad input."""
from __future__ import annotations

import pytest

from tests.functional.test_dispatch import make_agent


def test_health_needs_no_token(anon_api):
    r = anon_api.get("/api/health")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_openapi_is_public_json(anon_api):
    r = anon_api.get("/api/openapi.json")
    assert r.status_code == 200 and r.json["openapi"].startswith("3.")


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/agents"), ("POST", "/api/agents"), ("GET", "/api/agents/x"), ("PATCH", "/api/agents/x"),
    ("DELETE", "/api/agents/x"), ("POST", "/api/agents/x/schedule"), ("GET", "/api/agents/x/schedule"),
    ("DELETE", "/api/agents/x/schedule"), ("POST", "/api/agents/x/run"), ("GET", "/api/agents/x/sessions"),
    ("GET", "/api/agents/x/sessions/y"), ("POST", "/api/agents/x/sessions/y/cancel"),
    ("GET", "/api/scheduler/status"), ("POST", "/api/scheduler/pause"), ("POST", "/api/scheduler/resume"),
    ("POST", "/api/schedules/validate"), ("POST", "/api/schedules/bulk"), ("GET", "/api/schedules/conflicts"),
    ("GET", "/api/agents/x/fires"), ("GET", "/api/dlq"), ("POST", "/api/dlq/redrive"),
])
def test_every_route_but_health_needs_a_token(anon_api, method, path):
    r = anon_api.call(method, path, {})
    assert r.status_code == 401 and r.json["code"] == "UNAUTHORIZED"


def test_bad_token_is_401(anon_api):
    r = anon_api.get("/api/agents", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "token" in r.json["message"]


def test_agent_crud(api):
    r = api.post("/api/agents", {"name": "nightly", "kind": "sleep", "config": {"seconds": 1}, "description": "d",
                                 "timeoutSeconds": 60, "maxRetries": 2})
    assert r.status_code == 201
    a = r.json
    assert a["id"] and a["name"] == "nightly" and a["schedule"] is None and a["maxRetries"] == 2
    assert a["createdAt"].endswith("+00:00")
    assert api.get(f"/api/agents/{a['id']}").json == a
    r = api.patch(f"/api/agents/{a['id']}", {"name": "renamed", "timeoutSeconds": 30})
    assert r.status_code == 200 and r.json["name"] == "renamed" and r.json["timeoutSeconds"] == 30
    assert r.json["config"]["seconds"] == 1
    assert api.delete(f"/api/agents/{a['id']}").status_code == 204
    assert api.get(f"/api/agents/{a['id']}").status_code == 404


def test_default_max_retries_comes_from_settings(api):
    assert api.post("/api/agents", {"name": "x", "kind": "echo"}).json["maxRetries"] == 3


def test_list_is_paginated(api):
    for i in range(5):
        make_agent(api, f"a{i}")
    r = api.get("/api/agents?limit=2")
    assert len(r.json["items"]) == 2 and r.json["nextToken"]
    seen = [a["id"] for a in r.json["items"]]
    while r.json["nextToken"]:
        r = api.get(f"/api/agents?limit=2&nextToken={r.json['nextToken']}")
        seen += [a["id"] for a in r.json["items"]]
    assert len(seen) == 5 == len(set(seen))


@pytest.mark.parametrize("q,field", [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"),
                                     ("nextToken=garbage!", "nextToken"), ("color=red", "color")])
def test_list_bad_query_is_400(api, q, field):
    r = api.get(f"/api/agents?{q}")
    assert r.status_code == 400 and r.json["field"] == field


def test_a_token_of_another_tenant_cannot_page_my_agents(api, other_api):
    for i in range(3):
        make_agent(api, f"a{i}")
    token = api.get("/api/agents?limit=1").json["nextToken"]
    r = other_api.get(f"/api/agents?limit=1&nextToken={token}")
    assert r.status_code == 400 and r.json["field"] == "nextToken"


def test_another_tenants_agent_is_404_everywhere(api, other_api):
    aid = make_agent(api)
    api.post(f"/api/agents/{aid}/schedule", {"cronExpression": "0 * * * *"})
    sid = api.post(f"/api/agents/{aid}/run", {}).json["sessionId"]
    for method, path, body in [
        ("GET", f"/api/agents/{aid}", None), ("PATCH", f"/api/agents/{aid}", {"name": "x"}),
        ("DELETE", f"/api/agents/{aid}", None), ("GET", f"/api/agents/{aid}/schedule", None),
        ("POST", f"/api/agents/{aid}/schedule", {"cronExpression": "* * * * *"}),
        ("DELETE", f"/api/agents/{aid}/schedule", None), ("POST", f"/api/agents/{aid}/run", {}),
        ("GET", f"/api/agents/{aid}/sessions", None), ("GET", f"/api/agents/{aid}/sessions/{sid}", None),
        ("POST", f"/api/agents/{aid}/sessions/{sid}/cancel", None), ("GET", f"/api/agents/{aid}/fires", None),
    ]:
        r = other_api.call(method, path, body)
        assert r.status_code == 404, (method, path, r.body)
        assert r.json["code"] == "NOT_FOUND"
    assert other_api.get("/api/agents").json["items"] == []
    assert api.get(f"/api/agents/{aid}").status_code == 200, "nothing of mine was changed"


@pytest.mark.parametrize("body,field", [
    ({"kind": "echo"}, "name"),
    ({"name": "a", "kind": "echo", "config": {"unknown": 1}}, "config.unknown"),
    ({"name": "a", "kind": "sleep", "config": {}}, "config.seconds"),
    ({"name": "a", "kind": "http", "config": {"url": "ftp://x"}}, "config.url"),
    ({"name": "a", "kind": "echo", "extra": 1}, "extra"),
    ({"name": "a", "kind": "echo", "timeoutSeconds": 1000}, "timeoutSeconds"),
])
def test_bad_agent_bodies_are_400_naming_the_field(api, body, field):
    r = api.post("/api/agents", body)
    assert r.status_code == 400, r.body
    assert r.json["field"] == field and field in r.json["message"]


@pytest.mark.parametrize("raw", ["{", "[]", '"x"', "null", "nan"])
def test_malformed_bodies_are_400(api, raw):
    r = api.call("POST", "/api/agents", raw=raw)
    assert r.status_code == 400 and r.json["code"] in ("MALFORMED_REQUEST", "VALIDATION_ERROR")


def test_schedule_lifecycle_in_a_time_zone(api, clock):
    aid = make_agent(api)
    r = api.post(f"/api/agents/{aid}/schedule", {"cronExpression": "0 9 * * MON-FRI", "timezone": "America/New_York",
                                                 "priority": "HIGH"})
    assert r.status_code == 200
    s = r.json
    assert s["nextRunAt"] == "2026-03-02T09:00:00-05:00" or s["nextRunAt"] == "2026-03-03T09:00:00-05:00"
    assert len(s["nextRuns"]) == 5 and all(t.endswith(("-05:00", "-04:00")) for t in s["nextRuns"])
    g = api.get(f"/api/agents/{aid}/schedule").json
    assert g["nextRuns"] == s["nextRuns"] and g["priority"] == "HIGH"
    assert api.get(f"/api/agents/{aid}").json["schedule"]["cronExpression"] == "0 9 * * MON-FRI"
    assert api.delete(f"/api/agents/{aid}/schedule").status_code == 204
    assert api.get(f"/api/agents/{aid}/schedule").status_code == 404
    assert api.get(f"/api/agents/{aid}").status_code == 200, "the agent stays"


@pytest.mark.parametrize("body,field", [
    ({"cronExpression": "61 * * * *"}, "cronExpression"),
    ({"cronExpression": "5-1 * * * *"}, "cronExpression"),
    ({"cronExpression": "* * 31 2 *"}, "cronExpression"),
    ({"cronExpression": "* * * * * * *"}, "cronExpression"),
    ({"cronExpression": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"cronExpression": "* * * * *", "priority": "ASAP"}, "priority"),
    ({"cronExpression": "* * * * *", "startAt": "2026-05-01T00:00:00Z", "endAt": "2026-04-01T00:00:00Z"}, "endAt"),
])
def test_bad_schedules_are_400_naming_the_field(api, body, field):
    aid = make_agent(api)
    r = api.post(f"/api/agents/{aid}/schedule", body)
    assert r.status_code == 400 and r.json["field"] == field, r.body


def test_hashed_schedule_is_stable_per_agent(api):
    a = make_agent(api, "a")
    ra = api.post(f"/api/agents/{a}/schedule", {"cronExpression": "H H * * *"}).json["nextRuns"]
    assert api.post(f"/api/agents/{a}/schedule", {"cronExpression": "H H * * *"}).json["nextRuns"] == ra
    assert len(ra) == 5


def test_validate_endpoint(api):
    r = api.post("/api/schedules/validate", {"cronExpression": "30 2 * * *", "timezone": "America/New_York",
                                             "from": "2026-03-07T12:00:00Z", "count": 3})
    assert r.status_code == 200 and r.json["valid"] is True
    assert r.json["nextRuns"] == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    assert any("DST" in w or "does not exist" in w for w in r.json["warnings"])
    r = api.post("/api/schedules/validate", {"cronExpression": "* * 30 2 *"})
    assert r.status_code == 400 and r.json["field"] == "cronExpression"
    r = api.post("/api/schedules/validate", {"cronExpression": "* * * * *", "count": 101})
    assert r.status_code == 400 and r.json["field"] == "count"


def test_run_now_and_sessions(api, system):
    aid = make_agent(api)
    r = api.post(f"/api/agents/{aid}/run", {"priority": "CRITICAL", "input": {"k": 1}})
    assert r.status_code == 202 and r.json["status"] == "QUEUED"
    sid = r.json["sessionId"]
    items = api.get(f"/api/agents/{aid}/sessions").json["items"]
    assert [s["sessionId"] for s in items] == [sid] and items[0]["priority"] == "CRITICAL"
    assert api.get(f"/api/agents/{aid}/sessions?status=SUCCEEDED").json["items"] == []
    assert api.get(f"/api/agents/{aid}/sessions?status=BOGUS").status_code == 400
    s = api.get(f"/api/agents/{aid}/sessions/{sid}").json
    assert s["input"] == {"k": 1} and s["trigger"] == "MANUAL"
    assert api.get(f"/api/agents/{aid}/sessions/nope").status_code == 404
    assert api.post(f"/api/agents/{aid}/run", {"priority": "URGENT"}).status_code == 400


def test_sessions_are_newest_first_and_paginated(api, system, clock):
    aid = make_agent(api)
    sids = []
    for _ in range(4):
        sids.append(api.post(f"/api/agents/{aid}/run", {}).json["sessionId"])
        clock.advance(1)
    r = api.get(f"/api/agents/{aid}/sessions?limit=3")
    got = [s["sessionId"] for s in r.json["items"]]
    r = api.get(f"/api/agents/{aid}/sessions?limit=3&nextToken={r.json['nextToken']}")
    got += [s["sessionId"] for s in r.json["items"]]
    assert got == list(reversed(sids))


def test_status_reports_the_callers_own_runs(api, other_api):
    aid = make_agent(api)
    api.post(f"/api/agents/{aid}/run", {})
    mine = api.get("/api/scheduler/status").json
    theirs = other_api.get("/api/scheduler/status").json
    assert mine["queued"] == 1 and theirs["queued"] == 0
    for key in ("paused", "maxConcurrentAgents", "running", "queued", "pending", "lastTickAt", "dlqDepth"):
        assert key in mine
    assert mine["maxConcurrentAgents"] == 5


def test_unknown_route_and_method(api):
    assert api.get("/api/nothing").status_code in (403, 404)
    assert api.call("PUT", "/api/agents").status_code in (403, 405)


@pytest.mark.parametrize("key", [
    '{"tenant_id":{"S":"tenant-a"},"agent_id":{"N":"1"}}',
    '{"tenant_id":{"S":"tenant-a"}}',
    '{"tenant_id":{"S":"tenant-a"},"agent_id":{"S":"x"},"extra":{"S":"y"}}',
    '{"tenant_id":{"S":"tenant-a"},"agent_id":{"S":""}}',
    '[]',
])
def test_a_tampered_page_token_is_a_400_not_a_500(api, key):
    import base64

    make_agent(api)
    token = base64.urlsafe_b64encode(key.encode()).decode()
    r = api.get(f"/api/agents?nextToken={token}")
    assert r.status_code == 400 and r.json["field"] == "nextToken"


def test_an_empty_patch_is_a_400(api):
    aid = make_agent(api)
    r = api.patch(f"/api/agents/{aid}", {})
    assert r.status_code == 400 and r.json["code"] == "VALIDATION_ERROR"
