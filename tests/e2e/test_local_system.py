"""The local system end to end: REST, WebSocket events, retries, DLQ, the minute tick.

One `python -m local.run` for the module (see conftest). The every-minute
schedule and a client of another tenant are set up first (``watchers``) so the
wait for a real minute boundary overlaps the other tests; they are checked by
the last tests.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime

import boto3
import httpx
import pytest
from botocore.config import Config
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import ROOT, TICK_SECONDS, stop_system, system_env, token

pytestmark = pytest.mark.e2e

OTHER_TENANT = "e2e-other-tenant"


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def create_agent(api: httpx.Client, **fields) -> dict:
    r = api.post("/api/agents", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def subscribe(events, agent_ids: list[str]) -> dict:
    events.send({"action": "subscribe", "agentIds": agent_ids})
    return events.expect("subscribed")


def run_events(events, session_id: str, until, timeout: float) -> list[dict]:
    """Agent events of one session, in arrival order, up to the first that satisfies ``until``."""
    got = []
    end = time.monotonic() + timeout
    while True:
        e = events.next(
            lambda e: e.get("data", {}).get("sessionId") == session_id,
            timeout=max(0.1, end - time.monotonic()),
            what=f"events of session {session_id}",
        )
        got.append(e)
        if until(e):
            return got


@pytest.fixture(scope="module", autouse=True)
def watchers(system):
    """Started first: an every-minute agent with its watcher, and another tenant's client."""
    api = system.http(system.token)
    cron_agent = create_agent(api, name="every minute", kind="echo", config={"message": "tick"})
    r = api.post(f"/api/agents/{cron_agent['id']}/schedule", json={"cronExpression": "* * * * *"})
    assert r.status_code == 200, r.text
    scheduled_at = time.time()
    cron_events = system.ws(system.token)
    subscribe(cron_events, [cron_agent["id"]])

    intruder = system.ws(token(OTHER_TENANT))
    reply = subscribe(intruder, ["*"])
    assert reply["data"]["agentIds"] == ["*"]
    return {"cron_agent": cron_agent, "scheduled_at": scheduled_at, "cron_events": cron_events, "intruder": intruder}


# --- start-up, auth, the management API -------------------------------------------------------------
def test_health_openapi_and_printed_tokens(system):
    assert httpx.get(system.api_url + "/api/health").json() == {"status": "ok"}
    assert httpx.get(system.api_url + "/api/openapi.json").json()["openapi"].startswith("3.")
    assert system.http().get("/api/agents").status_code == 401
    assert system.http(system.token).get("/api/agents").status_code == 200
    status = system.http(system.admin_token).get("/api/scheduler/status")
    assert status.status_code == 200 and status.json()["maxConcurrentAgents"] == 5
    log = system.log()
    assert f"http://127.0.0.1:{system.api_port}" in log and f"ws://127.0.0.1:{system.ws_port}" in log
    assert f"http://127.0.0.1:{system.moto_port}" in log


def test_concurrent_requests_of_different_tenants_do_not_mix(system):
    """REST requests are served in parallel threads; each sees its own request and tenant."""
    from concurrent.futures import ThreadPoolExecutor

    def create_and_read(n: int) -> bool:
        api = system.http(token(f"e2e-parallel-{n}"))
        agent = create_agent(api, name=f"parallel {n}", kind="echo", config={"message": str(n)})
        listed = api.get("/api/agents").json()["items"]
        got = api.get(f"/api/agents/{agent['id']}").json()
        return [a["id"] for a in listed] == [agent["id"]] and got["config"] == {"message": str(n)}

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(create_and_read, range(32)))


@pytest.mark.parametrize(
    "bearer",
    [None, "", "not-a-jwt", token("t1", secret="another-secret-0123456789abcdef0123"), token("t1", ttl=-3600)],
    ids=["missing", "empty", "garbage", "wrong-secret", "expired"],
)
def test_websocket_without_a_valid_token_is_refused_at_the_handshake(system, bearer):
    with pytest.raises(InvalidStatus) as info:
        system.ws(bearer)
    assert info.value.response.status_code == 401


def test_management_api_answers_gone_for_unknown_connections(system):
    for method in ("POST", "GET", "DELETE"):
        r = httpx.request(method, f"{system.management_url}/@connections/bm9wZQ=", content=b"{}")
        assert r.status_code == 410, (method, r.text)
        assert r.headers["x-amzn-ErrorType"] == "GoneException"
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=system.management_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId="bm9wZQ=", Data=b"hello")


def test_management_api_reaches_a_live_connection(system):
    """Find a connection's id in the emulator's table, then GET, POST and DELETE it like API Gateway."""
    tenant = f"e2e-mgmt-{uuid.uuid4().hex[:8]}"
    events = system.ws(token(tenant))
    events.send({"action": "ping"})
    events.expect("pong")
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=system.moto_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    items = dynamodb.scan(TableName="agent-scheduler-connections")["Items"]
    mine = [i for i in items if i["tenant_id"]["S"] == tenant]
    assert len(mine) == 1
    assert int(mine[0]["expires_at"]["N"]) > time.time()  # stored with a TTL
    cid = mine[0]["connection_id"]["S"]
    mgmt = boto3.client(
        "apigatewaymanagementapi", endpoint_url=system.management_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    info = mgmt.get_connection(ConnectionId=cid)
    assert info["ConnectedAt"].timestamp() <= time.time() and "SourceIp" in info["Identity"]
    mgmt.post_to_connection(ConnectionId=cid, Data=b'{"event":"hello","data":{}}')
    events.expect("hello")
    mgmt.delete_connection(ConnectionId=cid)
    with pytest.raises(mgmt.exceptions.GoneException):
        mgmt.post_to_connection(ConnectionId=cid, Data=b"{}")
    # $disconnect removed it from the table.
    end = time.monotonic() + 5
    while time.monotonic() < end:
        items = dynamodb.scan(TableName="agent-scheduler-connections")["Items"]
        if not any(i["connection_id"]["S"] == cid for i in items):
            break
        time.sleep(0.1)
    else:
        pytest.fail("$disconnect did not remove the connection")


def test_a_stored_connection_that_is_gone_is_deleted(system):
    """A connection API Gateway no longer knows (410 GoneException on push) is removed from the table."""
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=system.moto_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    ghost = f"ghost{uuid.uuid4().hex[:10]}="
    dynamodb.put_item(TableName="agent-scheduler-connections", Item={
        "connection_id": {"S": ghost}, "tenant_id": {"S": "dev"}, "subscriptions": {"L": [{"S": "*"}]},
        "connected_at": {"N": str(int(time.time()))}, "expires_at": {"N": str(int(time.time()) + 3600)},
    })
    events = system.ws(system.token)
    subscribe(events, ["*"])
    end = time.monotonic() + TICK_SECONDS * 3 + 5  # the next scheduler:status push finds it gone
    while time.monotonic() < end:
        if "Item" not in dynamodb.get_item(TableName="agent-scheduler-connections", Key={"connection_id": {"S": ghost}}):
            break
        events.drain(0.2)
    else:
        pytest.fail("the gone connection is still stored")
    # The live connection of the same tenant still gets its events.
    events.expect("scheduler:status", timeout=TICK_SECONDS * 2 + 3)


# --- events --------------------------------------------------------------------------------------------
def test_subscribe_ping_and_a_sleep_run_streams_started_progress_completed(system):
    api = system.http(system.token)
    agent = create_agent(api, name="sleeper", kind="sleep", config={"seconds": 2, "progressEvery": 0.5})
    events = system.ws(system.token)
    reply = subscribe(events, [agent["id"], "ag_does_not_exist"])
    assert reply["data"]["agentIds"] == [agent["id"]] and reply["data"]["unknown"] == ["ag_does_not_exist"]
    events.send({"action": "ping"})
    pong = events.expect("pong")
    assert set(pong) == {"event", "data", "timestamp"}

    r = api.post(f"/api/agents/{agent['id']}/run", json={})
    assert r.status_code == 202 and r.json()["status"] == "QUEUED", r.text
    sid = r.json()["sessionId"]
    got = run_events(events, sid, lambda e: e["event"] in ("agent:completed", "agent:failed"), timeout=15)
    names = [e["event"] for e in got]
    assert names[0] == "agent:started" and names[-1] == "agent:completed", names
    progress = [e["data"]["progress"] for e in got if e["event"] == "agent:progress"]
    assert names[1:-1] == ["agent:progress"] * len(progress) and len(progress) >= 2, names
    assert progress == sorted(progress) and progress[-1] == 100
    for e in got:
        assert e["data"]["agentId"] == agent["id"] and e["data"]["attempt"] == 1 and e["timestamp"]
    assert got[0]["data"]["trigger"] == "MANUAL"
    assert got[-1]["data"]["output"] == {"slept": 2}

    session = api.get(f"/api/agents/{agent['id']}/sessions/{sid}").json()
    assert session["status"] == "SUCCEEDED" and session["attempt"] == 1
    assert f"agent:completed agent={agent['id']} session={sid}" in system.log()  # one readable line per change


def test_failing_run_retries_then_goes_to_the_dlq_and_redrive_runs_it_again(system):
    api = system.http(system.token)
    agent = create_agent(api, name="always fails", kind="fail", config={}, maxRetries=2)
    events = system.ws(system.token)
    subscribe(events, [agent["id"]])
    sid = api.post(f"/api/agents/{agent['id']}/run", json={}).json()["sessionId"]

    failures = []
    for _ in range(3):
        failures.append(events.expect("agent:failed", timeout=15, sessionId=sid))
    assert [f["data"]["attempt"] for f in failures] == [1, 2, 3]
    assert [f["data"]["willRetry"] for f in failures] == [True, True, False]
    assert failures[0]["data"]["nextAttemptAt"] and failures[2]["data"]["nextAttemptAt"] is None
    assert failures[2]["data"]["error"]["category"] == "AGENT_ERROR"

    dlq = api.get("/api/dlq").json()["items"]
    dead = [i for i in dlq if i["sessionId"] == sid]
    assert len(dead) == 1 and dead[0]["agentId"] == agent["id"] and dead[0]["attempt"] == 3, dlq
    assert api.get(f"/api/agents/{agent['id']}/sessions/{sid}").json()["status"] == "DEAD"

    r = api.post("/api/dlq/redrive", json={"sessionIds": [sid]})
    assert r.status_code == 202 and r.json() == {"redriven": 1}, r.text
    dead = api.get(f"/api/agents/{agent['id']}/sessions/{sid}").json()  # history kept
    assert dead["status"] == "DEAD" and dead["redrivenTo"]
    started = events.expect("agent:started", timeout=15, sessionId=dead["redrivenTo"])
    assert started["data"]["trigger"] == "REDRIVE" and started["data"]["attempt"] == 1
    again = api.get(f"/api/agents/{agent['id']}/sessions/{dead['redrivenTo']}").json()
    assert again["trigger"] == "REDRIVE" and again["redrivenFrom"] == sid


def test_every_connection_gets_scheduler_status_after_each_tick(system):
    events = system.ws(system.token)  # no subscription needed
    first = events.expect("scheduler:status", timeout=TICK_SECONDS * 2 + 3)
    second = events.expect("scheduler:status", timeout=TICK_SECONDS * 2 + 3)
    for e in (first, second):
        assert {"paused", "maxConcurrentAgents", "running", "queued", "pending", "lastTickAt", "dlqDepth"} <= set(e["data"])
    assert ts(second["data"]["lastTickAt"]) > ts(first["data"]["lastTickAt"])


# --- configuration ----------------------------------------------------------------------------------------
def test_a_bad_setting_or_a_busy_port_stops_start_up_naming_the_variable(system):
    bad = subprocess.run(
        [sys.executable, "-m", "local.run"], cwd=ROOT, env=system_env(SCHEDULER_MAX_RETRIES="lots"),
        capture_output=True, text=True, timeout=30,
    )
    assert bad.returncode == 2 and "SCHEDULER_MAX_RETRIES" in bad.stderr, bad.stderr
    busy = subprocess.run(
        [sys.executable, "-m", "local.run"], cwd=ROOT,
        env=system_env(SCHEDULER_API_PORT=str(system.api_port), SCHEDULER_WS_PORT="1"),
        capture_output=True, text=True, timeout=30,
    )
    assert busy.returncode == 1 and "SCHEDULER_API_PORT" in busy.stderr, busy.stderr


# --- checked last: the minute schedule, tenancy, shutdown ---------------------------------------------------
def test_an_every_minute_schedule_starts_within_one_second_of_the_minute(system, watchers):
    agent_id = watchers["cron_agent"]["id"]
    # A fire less than one tick after the schedule was saved cannot be admitted ahead of time: skip it.
    not_before = watchers["scheduled_at"] + TICK_SECONDS + 1
    started = watchers["cron_events"].next(
        lambda e: e["event"] == "agent:started" and ts(e["data"]["scheduledFor"]) >= not_before,
        timeout=not_before + 60 - time.time() + 10,
        what="the scheduled start",
    )
    data = started["data"]
    fire = ts(data["scheduledFor"])
    assert fire % 60 == 0 and data["trigger"] == "SCHEDULE"
    assert 0 <= data["latenessMs"] <= 1000, data
    assert 0 <= ts(data["startedAt"]) - fire <= 1.0, data
    session = system.http(system.token).get(f"/api/agents/{agent_id}/sessions/{data['sessionId']}").json()
    assert session["trigger"] == "SCHEDULE" and ts(session["startedAt"]) - ts(session["scheduledFor"]) <= 1.0
    watchers["cron_events"].expect("agent:completed", timeout=10, sessionId=data["sessionId"])


def test_a_client_of_another_tenant_receives_none_of_these_events(system, watchers):
    intruder = watchers["intruder"]
    own = system.http(system.token).get("/api/agents", params={"limit": 100}).json()["items"]
    assert own, "the other tests created agents"
    # Naming another tenant's agent does not subscribe to it, and its REST reads are 404.
    reply = subscribe(intruder, [own[0]["id"]])
    assert reply["data"]["unknown"] == [own[0]["id"]] and own[0]["id"] not in reply["data"]["agentIds"]
    assert system.http(token(OTHER_TENANT)).get(f"/api/agents/{own[0]['id']}").status_code == 404
    intruder.drain(0.5)
    agent_events = [e for e in intruder.seen if str(e.get("event", "")).startswith("agent:")]
    assert agent_events == []
    statuses = [e for e in intruder.seen if e.get("event") == "scheduler:status"]
    assert statuses and all(e["data"]["running"] == 0 and e["data"]["dlqDepth"] == 0 for e in statuses)


def test_zz_ctrl_c_stops_the_whole_system_cleanly(system):
    events = system.ws(system.token)
    events.send({"action": "ping"})
    events.expect("pong")
    started = time.monotonic()
    code = stop_system(system, signal.SIGINT)
    assert code == 0, system.log()[-3000:]
    assert time.monotonic() - started < 10
    assert '"message":"stopped"' in system.log() and '"name":"local.run"' in system.log()  # JSON log lines
