"""End-to-end: the resumable event stream through the local WebSocket gateway.

Real clients against ``python -m local.run``: tickets instead of tokens in the URL,
a connection dropped by the gateway (``DELETE @connections``), and a resume with
``since`` that gets exactly the missed events, in order, then live ones."""
from __future__ import annotations

import time
import uuid

import boto3
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import Events, token

pytestmark = pytest.mark.e2e


def _agent(api: httpx.Client, **fields) -> dict:
    r = api.post("/api/agents", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def _ticket_ws(system, bearer: str) -> Events:
    r = httpx.post(system.api_url + "/api/events/ticket", headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"] == f"{system.ws_url}/?ticket={body['ticket']}"
    events = Events(connect(body["url"], open_timeout=10, close_timeout=2, max_queue=1024))
    system._clients.append(events)
    return events


def _connection_id(system, tenant: str) -> str:
    dynamodb = boto3.client("dynamodb", endpoint_url=system.moto_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    items = dynamodb.scan(TableName="agent-scheduler-connections")["Items"]
    [cid] = [i["connection_id"]["S"] for i in items if i["tenant_id"]["S"] == tenant]
    return cid


def _wait_status(api: httpx.Client, agent_id: str, session_id: str, status: str, timeout: float = 20) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = api.get(f"/api/agents/{agent_id}/sessions/{session_id}").json()
        if s["status"] == status:
            return s
        time.sleep(0.1)
    raise AssertionError(f"session {session_id} not {status} within {timeout} s")


def test_a_ticket_opens_one_connection_and_is_refused_the_second_time(system):
    tenant = f"e2e-ticket-{uuid.uuid4().hex[:6]}"
    r = httpx.post(system.api_url + "/api/events/ticket", headers={"Authorization": f"Bearer {token(tenant)}"})
    url = r.json()["url"]
    first = Events(connect(url, open_timeout=10))
    system._clients.append(first)
    first.send({"action": "subscribe", "agentIds": ["*"]})
    assert isinstance(first.expect("subscribed")["data"]["lastSeq"], int)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10)
    assert refused.value.response.status_code == 401


def test_a_dropped_connection_resumes_with_exactly_the_missed_events_then_live(system):
    tenant = f"e2e-resume-{uuid.uuid4().hex[:6]}"
    bearer = token(tenant)
    api = system.http(bearer)
    agent = _agent(api, name="echo", kind="echo", config={"message": "hi"})
    events = _ticket_ws(system, bearer)
    events.send({"action": "subscribe", "agentIds": ["*"]})
    assert isinstance(events.expect("subscribed")["data"]["lastSeq"], int)
    first = api.post(f"/api/agents/{agent['id']}/run", json={}).json()["sessionId"]
    done = events.expect("agent:completed", timeout=20, sessionId=first)
    seen = [e["seq"] for e in events.seen if "seq" in e]
    assert seen == sorted(seen) and len(set(seen)) == len(seen) and done["id"]
    last = max(seen)

    # The gateway drops the connection (as API Gateway does after 2 h or 10 idle minutes).
    mgmt = boto3.client("apigatewaymanagementapi", endpoint_url=system.management_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    mgmt.delete_connection(ConnectionId=_connection_id(system, tenant))
    with pytest.raises(ConnectionClosed):
        events.drain(5)
    missed = []
    for _ in range(2):  # runs while nobody listens
        sid = api.post(f"/api/agents/{agent['id']}/run", json={}).json()["sessionId"]
        _wait_status(api, agent["id"], sid, "SUCCEEDED")
        missed.append(sid)
    polled = api.get(f"/api/events?since={last}").json()["items"]
    assert [e["seq"] for e in polled] == list(range(last + 1, last + 1 + len(polled)))

    again = _ticket_ws(system, bearer)
    again.send({"action": "subscribe", "agentIds": ["*"], "since": last})
    assert again.expect("subscribed")["data"]["lastSeq"] >= polled[-1]["seq"]
    replayed = [again.next(lambda e: "seq" in e, what="a replayed event") for _ in polled]
    assert [e["id"] for e in replayed] == [e["id"] for e in polled]  # the same events, in order, once
    assert {e["data"].get("sessionId") for e in replayed if e["event"] == "agent:completed"} == set(missed)
    live = api.post(f"/api/agents/{agent['id']}/run", json={}).json()["sessionId"]
    again.expect("agent:completed", timeout=20, sessionId=live)
    seqs = [e["seq"] for e in again.seen if "seq" in e]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) and seqs[0] == last + 1
