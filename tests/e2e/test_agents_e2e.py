"""The agent contract end to end: `make run` and a real HTTP server in this process as the agent.

The agent server checks every delivery's Standard Webhooks signature with the secret the
create answer showed (``standardwebhooks``, the library agents use) and reports through the
kit (``agent_scheduler.agent.Run``). Covered: the signed envelope, output and usage on the
session; an async run (202) with progress over the WebSocket and completion by callback; a
retried async failure whose new attempt has a new token (the old one is 404 there); a
heartbeat timeout; cancel of an async run (slot freed, a signed ``agent.cancel``); a restart
on the same state directory after which the agent still verifies; no token or secret in the
system's log. A synchronous answer after 65 s runs only with ``SCHEDULER_SLOW_E2E=1``.

One system for the module (as the shared fixture starts it: 2 s tick, short backoff, but
logging at DEBUG), two more for the restart.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agent_scheduler.agent import Run, parse
from tests.e2e.conftest import TICK_SECONDS, start_system, stop_system
from tests.e2e.polling import until

pytestmark = pytest.mark.e2e

SLOW = os.environ.get("SCHEDULER_SLOW_E2E") == "1"


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    payload: dict | None  # the verified JSON body; None when the signature did not verify
    at: float = field(default_factory=time.time)

    @property
    def type(self) -> str | None:
        return (self.payload or {}).get("type")


Behaviour = Callable[[dict], "tuple[int, Any]"]


class AgentServer:
    """Agents at ``/{name}``: each verifies with its own secrets and answers by its behaviour."""

    def __init__(self) -> None:
        self.secrets: dict[str, list[str]] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.deliveries: list[Delivery] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.path.strip("/")
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = None
                for secret in outer.secrets.get(name, []):
                    try:
                        payload = Webhook(secret).verify(body, headers)
                        break
                    except WebhookVerificationError:
                        continue
                with outer.cond:
                    outer.deliveries.append(Delivery(name, headers, body, payload))
                    outer.cond.notify_all()
                if payload is None:
                    return self.answer(401, {"error": "bad signature"})
                if payload.get("type") != "agent.run":
                    return self.answer(200, {"ok": True})
                status, answer = outer.behaviours[name](payload)
                self.answer(status, answer)

            def answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def wait(self, what: str, match: Callable[[Delivery], bool], timeout: float = 20.0) -> Delivery:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for d in self.deliveries:
                    if match(d):
                        return d
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout:g} s; got {[(d.path, d.type) for d in self.deliveries]}")
                self.cond.wait(left)

    def of(self, name: str, type_: str = "agent.run") -> list[Delivery]:
        with self.cond:
            return [d for d in self.deliveries if d.path == name and d.type == type_]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """This module's own system, logging at DEBUG: no level may print a token or a secret."""
    s = start_system(tmp_path_factory.mktemp("agents-e2e"), SCHEDULER_LOG_LEVEL="DEBUG")
    try:
        yield s
    finally:
        stop_system(s)
        if os.environ.get("E2E_SHOW_LOG"):
            print(s.log())


@pytest.fixture(scope="module")
def agents():
    server = AgentServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def seen():
    """Every callback token and signing secret the module met: none may be in the log."""
    return {"tokens": set(), "secrets": set()}


def create_webhook(system, agents: AgentServer, seen, name: str, behaviour: Behaviour, **fields) -> dict:
    api = system.http(system.token)
    r = api.post("/api/agents", json={"name": name, "kind": "webhook", "config": {"url": agents.url(name)}, **fields})
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["signingSecret"].startswith("whsec_")
    agents.secrets[name] = [agent["signingSecret"]]
    agents.behaviours[name] = behaviour
    seen["secrets"].add(agent["signingSecret"])
    return agent


def run_now(system, agent_id: str, **body) -> str:
    r = system.http(system.token).post(f"/api/agents/{agent_id}/run", json=body)
    assert r.status_code == 202, r.text
    return r.json()["sessionId"]


def session(system, agent_id: str, session_id: str) -> dict:
    r = system.http(system.token).get(f"/api/agents/{agent_id}/sessions/{session_id}")
    assert r.status_code == 200, r.text
    return r.json()


def ended(system, agent_id: str, session_id: str, timeout: float = 20.0) -> dict:
    final = ("SUCCEEDED", "FAILED", "DEAD", "CANCELLED", "TIMEOUT")

    def done():
        s = session(system, agent_id, session_id)
        return s if s["status"] in final else None

    return until(f"session {session_id} ended", done, timeout)


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def later(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, daemon=True).start()


# --- (a) the signed envelope; output and usage ----------------------------------------------------
def test_the_envelope_is_signed_and_the_answer_gives_output_and_usage(system, agents, seen):
    usage = {"inputTokens": 120, "outputTokens": 30, "costUsd": 0.002}
    agent = create_webhook(system, agents, seen, "sync",
                           lambda env: (200, {"output": {"echo": env["input"]}, "usage": usage}),
                           config={"url": agents.url("sync"), "headers": {"X-Team": "ml"}},
                           heartbeatSeconds=30, maxRetries=2)
    sid = run_now(system, agent["id"], input={"topic": "tides"})
    s = ended(system, agent["id"], sid)
    assert s["status"] == "SUCCEEDED", s
    assert s["output"] == {"echo": {"topic": "tides"}}
    assert s["usage"]["inputTokens"] == 120 and s["usage"]["outputTokens"] == 30
    assert s["async"] is False

    [d] = agents.of("sync")
    # verified with the library agents use, with the secret from the create answer
    assert Webhook(agent["signingSecret"]).verify(d.body, d.headers) == d.payload
    assert d.headers["webhook-id"] == sid and d.headers["content-type"] == "application/json"
    assert d.headers["x-team"] == "ml"
    assert abs(int(d.headers["webhook-timestamp"]) - d.at) < 60
    env = parse(d.payload)
    seen["tokens"].add(env.callback.token)
    assert (env.session_id, env.attempt, env.retries_left) == (sid, 1, 2)
    assert env.trigger == "MANUAL" and env.priority == "NORMAL"
    assert env.agent.id == agent["id"] and env.agent.name == "sync"
    assert env.input == {"topic": "tides"} and env.redriven_from is None and env.last_heartbeat_details is None
    assert env.timeout_seconds == agent["timeoutSeconds"]
    assert env.deadline is not None and env.deadline.timestamp() == pytest.approx(
        ts(s["startedAt"]) + agent["timeoutSeconds"], abs=1)
    assert env.callback.url == f"{system.api_url}/api/callbacks/{sid}/1"
    assert env.callback.heartbeat_seconds == 30 and len(env.callback.token) >= 22
    # a tampered body does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(agent["signingSecret"]).verify(d.body.replace(b"tides", b"tidez"), d.headers)


# --- (b) async: 202, progress over the WebSocket, completion by callback --------------------------
def test_an_async_run_reports_progress_live_and_completes_by_callback(system, agents, seen):
    gate = threading.Event()

    def work(env: dict) -> None:
        with Run(parse(env)) as run:
            gate.wait(10)
            run.progress(40, "reading sources")
            run.heartbeat({"page": 3})
            run.complete({"summary": "done"}, usage={"inputTokens": 1200, "outputTokens": 300})

    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        later(lambda: work(env))
        return 202, {"accepted": True}

    agent = create_webhook(system, agents, seen, "async", behaviour, heartbeatSeconds=30)
    events = system.ws(system.token)
    events.send({"action": "subscribe", "agentIds": [agent["id"]]})
    events.expect("subscribed")
    sid = run_now(system, agent["id"])
    agents.wait("the async delivery", lambda d: d.path == "async" and d.type == "agent.run")
    running = until("async RUNNING", lambda: (s := session(system, agent["id"], sid))["async"] and s)
    assert running["status"] == "RUNNING"
    gate.set()
    progress = events.expect("agent:progress", sessionId=sid)
    assert progress["data"]["progress"] == 40 and progress["data"].get("message") == "reading sources"
    events.expect("agent:completed", sessionId=sid)
    s = ended(system, agent["id"], sid)
    assert s["status"] == "SUCCEEDED" and s["async"] is True
    assert s["output"] == {"summary": "done"}
    assert s["usage"]["inputTokens"] == 1200 and s["usage"]["outputTokens"] == 300
    assert s["progress"]["percent"] == 40 and s["progress"]["message"] == "reading sources"


# --- (c) a retried async failure: a new attempt, a new token ---------------------------------------
def test_a_retried_async_failure_gets_a_new_token_and_the_checkpoint(system, agents, seen):
    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        if env["attempt"] == 1:
            def fail() -> None:
                with Run(parse(env)) as run:
                    run.heartbeat({"page": 7})
                    run.fail("upstream flaked", "TRANSIENT")
            later(fail)
        return 202, {}

    agent = create_webhook(system, agents, seen, "retried", behaviour, maxRetries=1, heartbeatSeconds=60)
    sid = run_now(system, agent["id"])
    second = agents.wait("the second attempt", lambda d: d.path == "retried" and (d.payload or {}).get("attempt") == 2)
    first = agents.of("retried")[0]
    old, new = parse(first.payload).callback, parse(second.payload).callback
    assert old.token != new.token and new.url.endswith(f"/callbacks/{sid}/2")
    assert second.payload["lastHeartbeatDetails"] == {"page": 7}
    assert second.payload["retriesLeft"] == 0 and second.headers["webhook-id"] == sid

    with httpx.Client(timeout=10) as http:
        wrong = http.post(new.url + "/progress", json={"progress": 10}, headers={"Authorization": f"Bearer {old.token}"})
        assert wrong.status_code == 404, wrong.text
        stale = http.post(old.url + "/progress", json={"progress": 10}, headers={"Authorization": f"Bearer {old.token}"})
        assert stale.status_code == 409 and stale.json()["endedBy"] == "FAILED", stale.text
        assert http.post(new.url + "/progress", json={"progress": 10}).status_code in (401, 404)  # no token at all
    with Run(new) as run:
        assert run.complete({"ok": True})["status"] in ("SUCCEEDED", "RUNNING")
    s = ended(system, agent["id"], sid)
    assert s["status"] == "SUCCEEDED" and s["attempt"] == 2 and s["output"] == {"ok": True}


# --- (d) a heartbeat timeout ---------------------------------------------------------------------------
def test_a_silent_async_agent_times_out_on_its_heartbeat_within_a_tick(system, agents, seen):
    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        return 202, {}  # and never calls back

    def beating(env: dict):
        seen["tokens"].add(env["callback"]["token"])

        def work() -> None:  # alive past its 10 s by heartbeats every 4 s, then done
            with Run(parse(env)) as run:
                for i in range(4):
                    run.heartbeat({"step": i})
                    time.sleep(4)
                run.complete("kept alive")
        later(work)
        return 202, {}

    agent = create_webhook(system, agents, seen, "silent", behaviour, heartbeatSeconds=10, maxRetries=0)
    alive = create_webhook(system, agents, seen, "beating", beating, heartbeatSeconds=10, maxRetries=0)
    sid = run_now(system, agent["id"])
    other = run_now(system, alive["id"])
    accepted = agents.wait("the silent delivery", lambda d: d.path == "silent" and d.type == "agent.run")
    s = ended(system, agent["id"], sid, timeout=10 + 4 * TICK_SECONDS + 10)
    assert s["status"] == "DEAD" and s["error"]["category"] == "TIMEOUT", s
    assert "heartbeat" in s["error"]["message"].lower(), s["error"]
    silent_for = ts(s["finishedAt"]) - accepted.at
    assert 10 - 1 <= silent_for <= 10 + TICK_SECONDS + 3, silent_for  # 1 s: the agent's and our clocks
    kept = ended(system, alive["id"], other, timeout=30)
    assert kept["status"] == "SUCCEEDED" and kept["output"] == "kept alive", kept
    assert ts(kept["finishedAt"]) - ts(kept["startedAt"]) > 10  # it outlived one heartbeat period


# --- (e) cancel of an async run ----------------------------------------------------------------------
def test_cancel_of_an_async_run_frees_its_slot_and_tells_the_agent_signed(system, agents, seen):
    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        if env["attempt"] == 1 and env["input"] == {"n": 1}:
            return 202, {}
        return 200, {"output": "second run", "usage": {"inputTokens": 1, "outputTokens": 1}}

    agent = create_webhook(system, agents, seen, "cancelled", behaviour, maxConcurrency=1, heartbeatSeconds=600)
    api = system.http(system.token)
    sid = run_now(system, agent["id"], input={"n": 1})
    delivery = agents.wait("the delivery", lambda d: d.path == "cancelled" and d.type == "agent.run")
    until("async RUNNING", lambda: session(system, agent["id"], sid)["async"])
    r = api.post(f"/api/agents/{agent['id']}/sessions/{sid}/cancel")
    assert r.status_code == 202, r.text
    s = ended(system, agent["id"], sid, timeout=5)
    assert s["status"] == "CANCELLED"
    notice = agents.wait("the agent.cancel", lambda d: d.path == "cancelled" and d.type == "agent.cancel")
    assert Webhook(agent["signingSecret"]).verify(notice.body, notice.headers) == notice.payload
    assert notice.payload == {"type": "agent.cancel", "sessionId": sid, "attempt": 1}
    assert notice.headers["webhook-id"] == sid
    # the callback of the cancelled attempt is told so
    cb = parse(delivery.payload).callback
    late = httpx.post(cb.url + "/heartbeat", json={}, headers={"Authorization": f"Bearer {cb.token}"}, timeout=10)
    assert late.status_code == 409 and late.json()["endedBy"] == "CANCELLED", late.text
    status = api.get("/api/scheduler/status").json()
    assert status["running"] == 0, status  # the global and tenant slots are free at once
    # its slot (maxConcurrency 1) is free: the next run starts and finishes
    nxt = run_now(system, agent["id"], input={"n": 2})
    done = ended(system, agent["id"], nxt)
    assert done["status"] == "SUCCEEDED" and done["output"] == "second run"


def test_a_synchronous_agent_learns_of_a_cancel_from_its_callback_answers(system, agents, seen):
    told = {}

    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        with Run(parse(env)) as run:
            end = time.monotonic() + 15
            while time.monotonic() < end and not run.cancel_requested:
                run.heartbeat()
                time.sleep(0.2)
            told["cancel_requested"] = run.cancel_requested
            if run.cancel_requested:  # stop: a failure ends it CANCELLED (a 2xx answer would be a success)
                told["fail"] = run.fail("stopped on request")["status"]
        return 200, {"output": "too late: the fail above ended the attempt"}

    agent = create_webhook(system, agents, seen, "sync-cancel", behaviour, maxRetries=0)
    sid = run_now(system, agent["id"])
    until("RUNNING", lambda: session(system, agent["id"], sid)["status"] == "RUNNING")
    r = system.http(system.token).post(f"/api/agents/{agent['id']}/sessions/{sid}/cancel")
    assert r.status_code == 202, r.text
    s = ended(system, agent["id"], sid, timeout=20)
    until("the agent's fail answered", lambda: "fail" in told, timeout=5)  # the run ends before it returns
    assert told == {"cancel_requested": True, "fail": "CANCELLED"}
    assert s["status"] == "CANCELLED" and s["output"] is None, s


def test_the_webhook_example_runs_sync_and_async_with_live_progress(system, seen):
    from examples.webhook_agent import make_server

    secrets: list[str] = []  # the example reads the list it is given: the secret comes with the agent
    example = make_server(secrets)
    threading.Thread(target=example.serve_forever, daemon=True).start()
    try:
        api = system.http(system.token)
        r = api.post("/api/agents", json={"name": "example", "kind": "webhook",
                                          "config": {"url": f"http://127.0.0.1:{example.server_address[1]}/"}})
        assert r.status_code == 201, r.text
        agent = r.json()
        secrets.append(agent["signingSecret"])
        seen["secrets"].add(agent["signingSecret"])
        events = system.ws(system.token)
        events.send({"action": "subscribe", "agentIds": [agent["id"]]})
        events.expect("subscribed")

        sync = ended(system, agent["id"], run_now(system, agent["id"], input={"text": "three little words"}))
        assert sync["status"] == "SUCCEEDED" and sync["output"] == {"words": 3}
        assert sync["usage"]["inputTokens"] == 3 and sync["async"] is False

        sid = run_now(system, agent["id"], input={"slow": True, "text": "a b c d"})
        progress = events.expect("agent:progress", sessionId=sid)
        assert progress["data"]["progress"] == 50
        slow = ended(system, agent["id"], sid)
        assert slow["status"] == "SUCCEEDED" and slow["async"] is True and slow["output"] == {"words": 4}
        assert slow["usage"]["inputTokens"] == 4
    finally:
        example.shutdown()
        example.server_close()


def test_a_rotation_signs_with_both_secrets_and_a_revoke_with_the_new_one_only(system, agents, seen):
    agent = create_webhook(system, agents, seen, "rotated", lambda env: (200, {"output": env["attempt"]}))
    api = system.http(system.token)
    old = agent["signingSecret"]
    r = api.post(f"/api/agents/{agent['id']}/signing-secret", json={})
    assert r.status_code == 200, r.text
    new = r.json()["signingSecret"]
    seen["secrets"].add(new)
    assert new != old and "signingSecret" not in api.get(f"/api/agents/{agent['id']}").json()
    agents.secrets["rotated"] = [new]
    assert ended(system, agent["id"], run_now(system, agent["id"]))["status"] == "SUCCEEDED"
    d = agents.of("rotated")[-1]
    assert len(d.headers["webhook-signature"].split()) == 2
    for secret in (old, new):  # an agent that knows either secret verifies the delivery
        assert Webhook(secret).verify(d.body, d.headers)["type"] == "agent.run"

    r = api.post(f"/api/agents/{agent['id']}/signing-secret", json={"revokePrevious": True})
    assert r.status_code == 200, r.text
    newest = r.json()["signingSecret"]
    seen["secrets"].add(newest)
    agents.secrets["rotated"] = [newest]
    assert ended(system, agent["id"], run_now(system, agent["id"]))["status"] == "SUCCEEDED"
    d = agents.of("rotated")[-1]
    assert len(d.headers["webhook-signature"].split()) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(d.body, d.headers)


def test_a_redriven_webhook_run_says_where_it_comes_from(system, agents, seen):
    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        return (500, {"error": "down"}) if env["trigger"] != "REDRIVE" else (200, {"output": "back"})

    agent = create_webhook(system, agents, seen, "redriven", behaviour, maxRetries=0)
    dead = ended(system, agent["id"], run_now(system, agent["id"], input={"k": 1}))
    assert dead["status"] == "DEAD" and dead["error"]["category"] == "TRANSIENT", dead
    r = system.http(system.token).post("/api/dlq/redrive", json={"sessionIds": [dead["sessionId"]]})
    assert r.status_code == 202 and r.json()["redriven"] == 1, r.text
    d = agents.wait("the redriven delivery", lambda d: d.path == "redriven" and (d.payload or {}).get("trigger") == "REDRIVE")
    assert d.payload["redrivenFrom"] == dead["sessionId"] and d.payload["input"] == {"k": 1}
    assert d.headers["webhook-id"] == d.payload["sessionId"] != dead["sessionId"]
    assert ended(system, agent["id"], d.payload["sessionId"])["output"] == "back"


def test_a_webhook_agent_never_reaches_the_systems_own_ports(system, seen):
    api = system.http(system.token)
    for port in (system.api_port, system.ws_port, system.moto_port):
        r = api.post("/api/agents", json={"name": f"inward-{port}", "kind": "webhook",
                                          "config": {"url": f"http://127.0.0.1:{port}/api/health"}})
        if r.status_code == 400:
            assert r.json()["field"].startswith("config"), r.text
            continue
        assert r.status_code == 201, r.text
        seen["secrets"].add(r.json()["signingSecret"])
        s = ended(system, r.json()["id"], run_now(system, r.json()["id"]))
        assert s["status"] == "DEAD" and s["error"]["category"] == "PERMANENT", s


# --- (g) a synchronous answer after 65 s (slow: SCHEDULER_SLOW_E2E=1) ------------------------------
@pytest.mark.skipif(not SLOW, reason="takes 65 s; set SCHEDULER_SLOW_E2E=1")
def test_a_synchronous_answer_after_65_seconds_is_kept(system, agents, seen):
    def behaviour(env: dict):
        seen["tokens"].add(env["callback"]["token"])
        time.sleep(65)
        return 200, {"output": "slow but sure", "usage": {"inputTokens": 5, "outputTokens": 5}}

    agent = create_webhook(system, agents, seen, "slow", behaviour, timeoutSeconds=120, maxRetries=0)
    sid = run_now(system, agent["id"])
    s = ended(system, agent["id"], sid, timeout=100)
    assert s["status"] == "SUCCEEDED" and s["output"] == "slow but sure" and s["usage"]["inputTokens"] == 5


# --- (f) no token or secret in the log (last: it reads what the tests above made the system log) -----
def test_no_callback_token_or_signing_secret_reaches_the_log(system, seen):
    log = system.log()
    assert seen["tokens"] and seen["secrets"]
    leaked = [t[:6] + "..." for t in seen["tokens"] | seen["secrets"] if t in log]
    assert not leaked, f"in the log: {leaked}"
    # nor the HMAC key (the secret without its prefix)
    assert not [s for s in seen["secrets"] if s.removeprefix("whsec_") in log]


# --- a restart keeps the signing key ------------------------------------------------------------------
def test_a_webhook_agent_still_signs_after_a_restart_on_the_same_state(tmp_path: Path, agents):
    state = tmp_path / "state"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = start_system(tmp_path / "one", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        created = first.http(first.token).post("/api/agents", json={
            "name": "restarted", "kind": "webhook", "config": {"url": agents.url("restarted")}})
        assert created.status_code == 201, created.text
        agent = created.json()
    finally:
        assert stop_system(first, signal.SIGINT) == 0, first.log()[-3000:]
    agents.secrets["restarted"] = [agent["signingSecret"]]  # only what the create answer showed
    agents.behaviours["restarted"] = lambda env: (200, {"output": {"attempt": env["attempt"]}})

    second = start_system(tmp_path / "two", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        sid = run_now(second, agent["id"])
        s = ended(second, agent["id"], sid)
        assert s["status"] == "SUCCEEDED", (s, second.log()[-3000:])
        [d] = agents.of("restarted")
        assert d.headers["webhook-id"] == sid
        assert Webhook(agent["signingSecret"]).verify(d.body, d.headers)["sessionId"] == sid
    finally:
        stop_system(second)


def test_an_async_run_in_flight_survives_a_restart_and_completes_by_its_callback(tmp_path: Path, agents):
    """The agent keeps working while the system restarts: its attempt is not the process's, so
    the restart must not end it; the agent's callback after the restart completes it."""
    state = tmp_path / "state"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    agents.behaviours["inflight"] = lambda env: (202, {})
    first = start_system(tmp_path / "one", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        created = first.http(first.token).post("/api/agents", json={
            "name": "inflight", "kind": "webhook", "config": {"url": agents.url("inflight")},
            "maxRetries": 0, "heartbeatSeconds": 120})
        assert created.status_code == 201, created.text
        agent = created.json()
        agents.secrets["inflight"] = [agent["signingSecret"]]
        sid = run_now(first, agent["id"])
        delivery = agents.wait("the delivery", lambda d: d.path == "inflight" and d.type == "agent.run")
        until("async RUNNING", lambda: session(first, agent["id"], sid)["async"])
    finally:
        assert stop_system(first, signal.SIGINT) == 0, first.log()[-3000:]

    second = start_system(tmp_path / "two", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        until("two recovery sweeps", lambda: second.log().count('"message":"tick"') >= 2, timeout=15)
        s = session(second, agent["id"], sid)
        assert (s["status"], s["attempt"], s["async"]) == ("RUNNING", 1, True), s
        cb = parse(delivery.payload).callback
        assert cb is not None
        # `make run` keeps its port; this test's systems get new ones, so the same path on the new one
        path = cb.url.split("/api/", 1)[1]
        done = httpx.post(f"{second.api_url}/api/{path}/complete", json={"output": "made it"},
                          headers={"Authorization": f"Bearer {cb.token}"}, timeout=10)
        assert done.status_code == 200, done.text
        s = ended(second, agent["id"], sid)
        assert (s["status"], s["attempt"], s["output"]) == ("SUCCEEDED", 1, "made it")
        assert len(agents.of("inflight")) == 1  # not delivered again
    finally:
        stop_system(second)
