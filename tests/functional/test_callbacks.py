"""Async attempts and their callbacks on moto: duplicates, races, timeouts, cancel.

A test kind stands for an agent that answers 202: it records the attempt's callback
(URL, token, heartbeatSeconds) and raises RunAccepted; the tests then call back as the
agent would, through the REST routes.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.agents import registry
from chalicelib.agents.base import RunAccepted
from chalicelib.api.callbacks import handle
from chalicelib.domain import events as ev
from chalicelib.domain.runflow import Backoff
from chalicelib.services.async_runs import expire_async
from tests.functional.helpers import take, work
from tests.functional.test_dispatch import make_agent


class AcceptingKind:
    """An agent that takes every attempt asynchronously; ``during`` runs inside the request."""

    name = "echo"

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.sessions: list = []
        self.during = None  # fn(ctx) called while the request is open
        self.answer = "accept"  # or "sync": answer synchronously with {"sync": True}

    def validate_config(self, config: dict) -> dict:
        return dict(config or {})

    def run(self, config, ctx, deps):
        self.calls.append(dict(ctx.callback))
        self.sessions.append(ctx.session)
        if self.during is not None:
            self.during(ctx)
        if self.answer == "sync":
            return {"sync": True}
        raise RunAccepted()


@pytest.fixture
def agent_kind(monkeypatch):
    kind = AcceptingKind()
    monkeypatch.setitem(registry._kinds, "echo", kind)
    return kind


def start(api, system, aid, **body):
    r = api.post(f"/api/agents/{aid}/run", body)
    assert r.status_code == 202, r.body
    return r.json["sessionId"], work(system, take(system))


def call(api, sid, attempt, action, token, body=None, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": ""}
    return api.post(f"/api/callbacks/{sid}/{attempt}/{action}", body if body is not None else {}, headers=headers, raw=raw)


def session(api, aid, sid):
    return api.get(f"/api/agents/{aid}/sessions/{sid}").json


def events(api, name):
    return [e for e in api.get("/api/events?limit=500").json["items"] if e["event"] == name]


def slots_in_use(api):
    return api.get("/api/scheduler/status").json["slotsInUse"]


def backoff():
    return Backoff(1.0, 300.0, lambda: 0.0)


# --- the happy path ------------------------------------------------------------------------------
def test_an_async_run_reports_progress_and_heartbeats_then_completes_once(api, system, clock, agent_kind):
    aid = make_agent(api, heartbeatSeconds=60, timeoutSeconds=600)
    sid, out = start(api, system, aid)
    assert out == ["accepted"]
    cb = agent_kind.calls[0]
    assert cb["url"] == f"http://127.0.0.1:8000/api/callbacks/{sid}/1"
    assert cb["heartbeatSeconds"] == 60 and len(cb["token"]) >= 40
    s = session(api, aid, sid)
    assert s["status"] == "RUNNING" and s["async"] is True and s["progress"] is None
    assert slots_in_use(api) == 1

    clock.advance(10)
    r = call(api, sid, 1, "progress", cb["token"], {"progress": 40, "message": "reading"})
    assert r.status_code == 200 and r.json == {"status": "RUNNING", "cancelRequested": False}
    clock.advance(0.1)  # inside the throttle: recorded on the session, no second event
    assert call(api, sid, 1, "progress", cb["token"], {"progress": 45}).status_code == 200
    r = call(api, sid, 1, "heartbeat", cb["token"], {"details": {"page": 3}})
    assert r.status_code == 200
    s = session(api, aid, sid)
    assert s["progress"]["percent"] == 45 and s["lastHeartbeatAt"] is not None
    assert [e["data"]["progress"] for e in events(api, "agent:progress")] == [40]
    stored = system.runs.get(aid, sid)
    assert stored.last_heartbeat_details == {"page": 3}
    assert stored.run_lease_until == clock.now().timestamp() + 60  # reset by the callback

    done = {"output": {"answer": 42}, "usage": {"inputTokens": 10, "outputTokens": 5, "costUsd": 0.01}}
    r = call(api, sid, 1, "complete", cb["token"], done)
    assert r.status_code == 200 and r.json == {"status": "SUCCEEDED", "cancelRequested": False}
    s = session(api, aid, sid)
    assert s["status"] == "SUCCEEDED" and s["output"] == {"answer": 42} and s["usage"] == done["usage"]
    assert slots_in_use(api) == 0

    # The same complete again (a retry): 200 again, nothing written twice.
    r = call(api, sid, 1, "complete", cb["token"], done)
    assert r.status_code == 200 and r.json["status"] == "SUCCEEDED"
    assert len(events(api, "agent:completed")) == 1
    # Anything else after the end: 409 with how it ended.
    for action, body in (("complete", {"output": "other"}), ("fail", {"message": "x"}),
                         ("progress", {"progress": 99}), ("heartbeat", {})):
        r = call(api, sid, 1, action, cb["token"], body)
        assert r.status_code == 409, (action, r.body)
        assert r.json["code"] == "RUN_FINISHED" and r.json["endedBy"] == "COMPLETED" and r.json["status"] == "SUCCEEDED"
    assert session(api, aid, sid)["output"] == {"answer": 42}


def test_complete_racing_complete_writes_once_and_both_answer_200(api, system, clock, agent_kind):
    aid = make_agent(api)
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    stale = system.runs.get(aid, sid)  # the second caller read the run before the first one wrote
    body = {"output": "done"}
    assert call(api, sid, 1, "complete", token, body).status_code == 200
    from chalicelib.domain import callbacks as cbd

    svc = system.callbacks
    lost = svc._end(stale, cbd.Action.COMPLETE, body, cbd.body_hash(cbd.Action.COMPLETE, body), "other-request",
                    clock.now().timestamp())
    assert lost is None  # its write found the attempt ended: it is judged again ...
    r = call(api, sid, 1, "complete", token, body)
    assert r.status_code == 200  # ... as the repeat of the call that ended it
    assert len(events(api, "agent:completed")) == 1
    assert system.runs.get(aid, sid).output == "done"


def test_complete_then_fail_and_fail_then_complete(api, system, clock, agent_kind):
    aid = make_agent(api, maxRetries=0)
    sid1, _ = start(api, system, aid)
    t1 = agent_kind.calls[-1]["token"]
    assert call(api, sid1, 1, "complete", t1, {"output": 1}).status_code == 200
    r = call(api, sid1, 1, "fail", t1, {"message": "late"})
    assert r.status_code == 409 and r.json["endedBy"] == "COMPLETED"

    sid2, _ = start(api, system, aid)
    t2 = agent_kind.calls[-1]["token"]
    fail = {"message": "bad input", "category": "PERMANENT"}
    r = call(api, sid2, 1, "fail", t2, fail)
    assert r.status_code == 200 and r.json["status"] == "DEAD"
    assert call(api, sid2, 1, "fail", t2, fail).status_code == 200  # its repeat
    r = call(api, sid2, 1, "complete", t2, {"output": 1})
    assert r.status_code == 409 and r.json["endedBy"] == "FAILED" and r.json["status"] == "DEAD"
    s = session(api, aid, sid2)
    assert s["error"] == {"category": "PERMANENT", "message": "bad input"}
    assert [i["sessionId"] for i in api.get("/api/dlq").json["items"]] == [sid2]


# --- who may call ------------------------------------------------------------------------------
def test_wrong_tokens_and_attempts_are_404_and_need_no_tenant_jwt(api, anon_api, system, agent_kind):
    aid = make_agent(api)
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    other_sid, _ = start(api, system, aid)
    other = agent_kind.calls[1]["token"]
    for t in (None, "garbage", token + "x", other, token.split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAA"):
        r = call(anon_api, sid, 1, "heartbeat", t)
        assert r.status_code == 404 and r.json["code"] == "NOT_FOUND", t
    assert call(anon_api, sid, 2, "heartbeat", token).status_code == 404  # an attempt that never was
    assert call(anon_api, sid, 0, "heartbeat", token).status_code == 404
    assert call(anon_api, "nope", 1, "heartbeat", token).status_code == 404
    assert call(anon_api, sid, 1, "explode", token).status_code == 404
    r = anon_api.post(f"/api/callbacks/{sid}/1/heartbeat", {}, headers={"Authorization": f"Token {token}"})
    assert r.status_code == 404
    # The right token, without any tenant JWT, works.
    assert call(anon_api, sid, 1, "heartbeat", token).status_code == 200
    assert call(anon_api, other_sid, 1, "heartbeat", other).status_code == 200


def test_bad_bodies_are_400_naming_the_field_and_big_ones_413(api, anon_api, system, agent_kind):
    aid = make_agent(api)
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    cases = [
        ("progress", {"progress": 101}, "progress"),
        ("progress", {"progress": "half"}, "progress"),
        ("progress", {}, "progress"),
        ("progress", {"progress": 5, "message": "m" * 2001}, "message"),
        ("heartbeat", {"details": "x" * (33 * 1024)}, "details"),
        ("heartbeat", {"detail": 1}, "detail"),
        ("complete", {"usage": {"inputTokens": -1}}, "usage.inputTokens"),
        ("fail", {}, "message"),
        ("fail", {"message": "x", "category": "TIMEOUT"}, "category"),
        ("fail", {"message": "x", "retryAfterSeconds": -1}, "retryAfterSeconds"),
    ]
    for action, body, field in cases:
        r = call(anon_api, sid, 1, action, token, body)
        assert r.status_code == 400 and r.json["field"] == field, (action, body, r.body)
    assert call(anon_api, sid, 1, "complete", token, raw="{not json").status_code == 400
    r = call(anon_api, sid, 1, "complete", token, raw=json.dumps({"output": "x" * (1024 * 1024)}))
    assert r.status_code == 413
    assert session(api, aid, sid)["status"] == "RUNNING"  # none of them did anything


def test_heartbeat_seconds_is_an_agent_field_bounded_10_to_3600(api):
    for bad in (5, 3601, "30", 1.5):
        r = api.post("/api/agents", {"name": "a", "kind": "echo", "heartbeatSeconds": bad})
        assert r.status_code == 400 and r.json["field"] == "heartbeatSeconds", bad
    aid = make_agent(api, heartbeatSeconds=30)
    assert api.get(f"/api/agents/{aid}").json["heartbeatSeconds"] == 30
    assert api.patch(f"/api/agents/{aid}", {"name": "b"}).json["heartbeatSeconds"] == 30
    assert api.patch(f"/api/agents/{aid}", {"heartbeatSeconds": None}).json["heartbeatSeconds"] is None
    assert api.patch(f"/api/agents/{aid}", {"heartbeatSeconds": 2}).status_code == 400


# --- liveness ------------------------------------------------------------------------------------
def test_heartbeat_timeout_retries_with_a_new_token_and_carries_the_details(api, system, clock, agent_kind):
    system.worker.rand = lambda: 0.0
    aid = make_agent(api, heartbeatSeconds=30, timeoutSeconds=600, maxRetries=1)
    sid, _ = start(api, system, aid)
    old = agent_kind.calls[0]["token"]
    clock.advance(20)
    assert call(api, sid, 1, "heartbeat", old, {"details": {"cursor": "p7"}}).status_code == 200
    clock.advance(29)
    system.dispatcher.recover(clock.now().timestamp())
    assert session(api, aid, sid)["status"] == "RUNNING"  # the heartbeat moved the lease: 20 + 30 s
    clock.advance(2)
    system.dispatcher.recover(clock.now().timestamp())
    s = session(api, aid, sid)
    assert s["status"] == "RETRYING" and s["error"]["category"] == "TIMEOUT"
    assert "heartbeatSeconds" in s["error"]["message"]
    assert slots_in_use(api) <= 1  # the retry may keep its slot
    r = call(api, sid, 1, "complete", old, {"output": "late"})
    assert r.status_code == 409 and r.json["endedBy"] == "HEARTBEAT" and r.json["status"] == "RETRYING"

    # The retry: a new attempt, a new token; the old one is nothing to it.
    sent = take(system)
    clock.advance(max(s.delay_seconds for s in sent) + 1)
    assert work(system, sent) == ["accepted"]
    new = agent_kind.calls[1]
    assert new["token"] != old and new["url"].endswith(f"/callbacks/{sid}/2")
    assert agent_kind.sessions[1].last_heartbeat_details == {"cursor": "p7"}  # lastHeartbeatDetails
    assert call(api, sid, 2, "complete", old, {"output": "x"}).status_code == 404
    r = call(api, sid, 1, "progress", old, {"progress": 1})
    assert r.status_code == 409 and r.json["endedBy"] == "HEARTBEAT"  # the previous attempt, still known
    assert call(api, sid, 2, "complete", new["token"], {"output": "ok"}).status_code == 200
    assert session(api, aid, sid)["status"] == "SUCCEEDED"
    r = call(api, sid, 1, "progress", old, {"progress": 1})  # once a newer attempt has ended too
    assert r.status_code == 409 and r.json["endedBy"] == "SUPERSEDED"


def test_retried_async_failure_gets_a_new_token_and_the_old_one_is_404_for_the_new_attempt(api, system, clock, agent_kind):
    system.worker.rand = lambda: 0.0
    aid = make_agent(api, maxRetries=2)
    sid, _ = start(api, system, aid)
    old = agent_kind.calls[0]["token"]
    fail = {"message": "upstream down", "category": "TRANSIENT", "retryAfterSeconds": 5}
    r = call(api, sid, 1, "fail", old, fail)
    assert r.status_code == 200 and r.json["status"] == "RETRYING"
    sent = take(system)
    clock.advance(max(s.delay_seconds for s in sent) + 1)
    assert work(system, sent) == ["accepted"]
    new = agent_kind.calls[1]["token"]
    assert new != old
    assert call(api, sid, 2, "heartbeat", old).status_code == 404
    assert call(api, sid, 1, "fail", old, fail).status_code == 200  # the repeat of the call that ended attempt 1
    assert call(api, sid, 2, "heartbeat", new).status_code == 200


def test_deadline_ends_an_async_attempt_within_one_sweep_and_late_calls_are_told(api, system, clock, agent_kind):
    aid = make_agent(api, timeoutSeconds=120, maxRetries=0)  # no heartbeatSeconds: only the deadline
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    clock.advance(100)
    assert call(api, sid, 1, "heartbeat", token).status_code == 200
    clock.advance(21)
    system.dispatcher.tick()
    s = session(api, aid, sid)
    assert s["status"] == "DEAD" and s["error"]["category"] == "TIMEOUT" and "timeoutSeconds" in s["error"]["message"]
    assert slots_in_use(api) == 0
    r = call(api, sid, 1, "complete", token, {"output": 1})
    assert r.status_code == 409 and r.json["endedBy"] == "DEADLINE"


def test_heartbeat_racing_the_sweep(api, system, clock, agent_kind):
    aid = make_agent(api, heartbeatSeconds=30, timeoutSeconds=600)
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    clock.advance(31)
    now = clock.now().timestamp()
    seen = system.runs.get(aid, sid)  # the sweep found it expired ...
    assert seen.run_lease_until < now
    assert call(api, sid, 1, "heartbeat", token).status_code == 200  # ... and the agent's heartbeat lands first
    assert expire_async(system, seen, now, backoff()) is False  # the sweep's end finds the lease moved
    assert session(api, aid, sid)["status"] == "RUNNING"
    # The other order: the sweep ends it, then the heartbeat is told so.
    clock.advance(31)
    system.dispatcher.recover(clock.now().timestamp())
    r = call(api, sid, 1, "heartbeat", token)
    assert r.status_code == 409 and r.json["endedBy"] == "HEARTBEAT"


def test_a_duplicate_delivery_of_an_expired_async_attempt_ends_it_as_a_timeout(api, system, clock, agent_kind):
    aid = make_agent(api, heartbeatSeconds=30)
    r = api.post(f"/api/agents/{aid}/run", {})
    sid = r.json["sessionId"]
    sent = take(system)
    assert work(system, sent) == ["accepted"]
    clock.advance(31)
    assert work(system, sent) == ["expired"]  # not "the worker stopped"
    s = session(api, aid, sid)
    assert s["status"] == "RETRYING" and s["error"]["category"] == "TIMEOUT"


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 2}])
def test_an_async_run_holds_its_slot_and_hands_it_over_when_it_completes(api, system, clock, agent_kind,
                                                                         settings_overrides):
    aid = make_agent(api)
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    sid2, out = start(api, system, aid)
    assert out == ["accepted"] and slots_in_use(api) == 2
    third = api.post(f"/api/agents/{aid}/run", {}).json["sessionId"]
    assert take(system) == [] and session(api, aid, third)["waitingForSlot"] is True
    assert call(api, sid, 1, "complete", token, {"output": 1}).status_code == 200
    handed = take(system)
    assert [m.body["s"] for m in handed] == [third]  # the freed slot went to the waiting run
    assert work(system, handed) == ["accepted"] and slots_in_use(api) == 2


# --- the synchronous request still open ------------------------------------------------------------
def test_callbacks_work_while_the_request_is_open_and_an_early_complete_wins(api, system, clock, agent_kind):
    aid = make_agent(api)
    seen = {}

    def during(ctx):
        token = ctx.callback["token"]
        lease = system.runs.get(aid, ctx.session_id).run_lease_until
        headers = {"Authorization": f"Bearer {token}"}
        seen["progress"] = handle(system.callbacks, ctx.session_id, "1", "progress", headers, b'{"progress": 50}')
        seen["lease"] = system.runs.get(aid, ctx.session_id).run_lease_until == lease  # the worker's lease stays
        seen["complete"] = handle(system.callbacks, ctx.session_id, "1", "complete", headers, b'{"output": "by callback"}')

    agent_kind.during = during
    agent_kind.answer = "sync"
    sid, out = start(api, system, aid)
    assert out == ["superseded"]  # the synchronous answer came second
    assert seen == {"progress": {"status": "RUNNING", "cancelRequested": False}, "lease": True,
                    "complete": {"status": "SUCCEEDED", "cancelRequested": False}}
    s = session(api, aid, sid)
    assert s["status"] == "SUCCEEDED" and s["output"] == "by callback" and s["async"] is False
    assert len(events(api, "agent:completed")) == 1


def test_a_202_after_the_complete_callback_changes_nothing(api, system, clock, agent_kind):
    aid = make_agent(api)

    def during(ctx):
        headers = {"Authorization": f"Bearer {ctx.callback['token']}"}
        handle(system.callbacks, ctx.session_id, "1", "complete", headers, b"{}")

    agent_kind.during = during
    sid, out = start(api, system, aid)
    assert out == ["superseded"]
    assert session(api, aid, sid)["status"] == "SUCCEEDED"


# --- cancel --------------------------------------------------------------------------------------
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class AgentServer:
    """An agent's own endpoint: records what it receives and verifies each signature."""

    def __init__(self, fail: bool = False) -> None:
        from standardwebhooks.webhooks import Webhook

        received: list = []
        self.received = received
        verifier = Webhook(SECRET)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                    received.append(json.loads(body))
                    self.send_response(500 if fail else 200)
                except Exception:
                    received.append("bad signature")
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/agent"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def standard_webhooks_signer(agent, msg_id: str, body: bytes) -> dict:
    from standardwebhooks.webhooks import Webhook

    ts = datetime.now(tz=timezone.utc)  # the verifier checks it against its own clock
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())),
            "webhook-signature": Webhook(SECRET).sign(msg_id, ts, body.decode())}


@pytest.fixture
def agent_server():
    server = AgentServer()
    yield server
    server.close()


def test_cancel_ends_an_async_run_at_once_frees_its_slot_and_tells_the_agent_signed(
        api, system, clock, agent_kind, agent_server):
    system.agent_signer = standard_webhooks_signer
    aid = make_agent(api, config={"url": agent_server.url})
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    assert slots_in_use(api) == 1
    r = api.post(f"/api/agents/{aid}/sessions/{sid}/cancel")
    assert r.status_code == 202 and r.json["status"] == "CANCELLED"
    assert slots_in_use(api) == 0
    # the API cannot read signing secrets: a worker sends the notice
    assert agent_server.received == []
    assert work(system, take(system)) == ["notice-sent"]
    assert agent_server.received == [{"type": "agent.cancel", "sessionId": sid, "attempt": 1}]
    for action, body in (("progress", {"progress": 3}), ("complete", {"output": 1}), ("heartbeat", {})):
        r = call(api, sid, 1, action, token, body)
        assert r.status_code == 409 and r.json["endedBy"] == "CANCELLED" and r.json["status"] == "CANCELLED"
    assert api.post(f"/api/agents/{aid}/sessions/{sid}/cancel").status_code == 409


def test_a_cancel_notice_that_fails_never_fails_the_cancel(api, system, clock, agent_kind):
    failing = AgentServer(fail=True)
    try:
        system.agent_signer = standard_webhooks_signer
        aid = make_agent(api, config={"url": failing.url})
        sid, _ = start(api, system, aid)
        assert api.post(f"/api/agents/{aid}/sessions/{sid}/cancel").json["status"] == "CANCELLED"
        assert work(system, take(system)) == ["notice-failed"]  # the agent answered 500
        before = system.cancel_notifier.failed
        system.agent_signer = None  # no signer configured: nothing unsigned is sent
        sid2, _ = start(api, system, aid)
        assert api.post(f"/api/agents/{aid}/sessions/{sid2}/cancel").json["status"] == "CANCELLED"
        assert work(system, take(system)) == ["notice-failed"]
        assert system.cancel_notifier.failed == before + 1
        assert len(failing.received) == 1
    finally:
        failing.close()


def test_a_cancel_while_the_request_is_open_ends_the_run_when_the_agent_answers_202(api, system, clock, agent_kind):
    aid = make_agent(api)

    def during(ctx):
        r = api.post(f"/api/agents/{aid}/sessions/{ctx.session_id}/cancel")
        assert r.status_code == 202 and r.json["status"] == "RUNNING"

    agent_kind.during = during
    sid, out = start(api, system, aid)
    assert out == ["cancelled"]
    assert session(api, aid, sid)["status"] == "CANCELLED"
    assert slots_in_use(api) == 0


def test_progress_events_carry_the_run_and_are_throttled_across_calls(api, system, clock, agent_kind):
    aid = make_agent(api)
    sid, _ = start(api, system, aid)
    token = agent_kind.calls[0]["token"]
    for pct in (10, 20, 30):
        assert call(api, sid, 1, "progress", token, {"progress": pct}).status_code == 200
        clock.advance(0.2)
    clock.advance(0.5)
    assert call(api, sid, 1, "progress", token, {"progress": 60, "message": "half"}).status_code == 200
    assert call(api, sid, 1, "progress", token, {"progress": 100}).status_code == 200  # 100 always passes
    got = [(e["data"]["progress"], e["data"]["message"], e["data"]["attempt"], e["data"]["sessionId"])
           for e in events(api, ev.AGENT_PROGRESS)]
    assert got == [(10, "", 1, sid), (60, "half", 1, sid), (100, "", 1, sid)]


def test_only_the_public_routes_and_the_callbacks_go_without_a_tenant_token(chalice_client):
    from app import app
    from chalicelib.api.routing_errors import allowed_methods

    public = {"/api/health", "/api/openapi.json", "/dashboard"}
    for path in app.routes:
        concrete = path.replace("{attempt}", "1")
        for name in ("agent_id", "session_id", "action"):
            concrete = concrete.replace("{" + name + "}", "x")
        for method in allowed_methods(app, path):  # (the others answer 405 to anyone)
            r = chalice_client.http.request(method, concrete, headers={"Content-Type": "application/json"},
                                            body=b"{}" if method in ("POST", "PATCH", "PUT") else None)
            if path in public:
                assert r.status_code == 200, (method, path)
            elif path.startswith("/api/callbacks/"):
                assert r.status_code == 404 and json.loads(r.body)["code"] == "NOT_FOUND", (method, path)  # its own token
            else:
                assert r.status_code == 401, (method, path, r.status_code)
