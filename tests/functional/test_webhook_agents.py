"""Webhook agents on moto: the signed envelope through the worker, answers, KMS-kept secrets, rotation."""
from __future__ import annotations

import base64
import json
import logging
import threading

import boto3
import pytest
from botocore.exceptions import ClientError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib.adapters.tables import AgentTenantModel
from chalicelib.agents.executor import execute
from chalicelib.agents.registry import get_kind
from chalicelib.domain.model import ErrorCategory
from chalicelib.services.worker import RunContext
from tests.functional.helpers import QuietHandler, base_url, local_server, take, work
from tests.functional.test_worker import run_now, session


class Recorder(QuietHandler):
    """Answers every POST with ``server.answer`` (status, headers, body) and records it."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.server.requests.append({"headers": dict(self.headers.items()), "body": raw, "path": self.path})
        status, headers, body = self.server.answer
        self.reply(status, body, headers)


@pytest.fixture
def agent_server():
    with local_server(Recorder) as server:
        server.requests = []
        server.answer = (200, {"Content-Type": "application/json"},
                         json.dumps({"output": {"summary": "done"}, "usage": {"inputTokens": 10, "outputTokens": 5,
                                                                             "costUsd": 0.002}}).encode())
        server.url = f"{base_url(server)}/agent"
        yield server


def create_webhook(api, url, **extra):
    r = api.post("/api/agents", {"name": "researcher", "kind": "webhook", "config": {"url": url, **extra.pop("config", {})},
                                 **extra})
    assert r.status_code == 201, r.body
    return r.json


def execute_once(system, aid, sid, timeout=30.0):
    """One attempt of the run through the executor with the worker's context and dependencies."""
    agent = system.agents.get("tenant-a", aid)
    s = system.runs.get(aid, sid)
    now = system.clock.now().timestamp()
    ctx = RunContext(system.worker, s, 1, deadline=now + timeout, agent=agent)
    return execute(get_kind("webhook"), agent.config, ctx, system.kind_deps("webhook"), timeout)


# --- the run through the worker ---------------------------------------------------------------
def test_a_webhook_agent_gets_the_signed_envelope_and_its_answer_is_the_output(api, system, agent_server):
    created = create_webhook(api, agent_server.url, config={"headers": {"X-Team": "research"}}, maxRetries=2)
    secret, aid = created["signingSecret"], created["id"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    sid = run_now(api, aid, input={"topic": "tides"})
    assert work(system, take(system)) == ["succeeded"]

    (req,) = agent_server.requests
    headers = req["headers"]
    assert headers["Content-Type"] == "application/json" and headers["X-Team"] == "research"
    assert headers["webhook-id"] == sid
    envelope = Webhook(secret).verify(req["body"], headers)  # raises unless signed with the agent's secret
    assert envelope == {
        "type": "agent.run", "sessionId": sid, "attempt": 1, "retriesLeft": 2, "trigger": "MANUAL",
        "priority": "NORMAL", "scheduledFor": envelope["scheduledFor"], "timeoutSeconds": 300,
        "deadline": envelope["deadline"], "redrivenFrom": None, "lastHeartbeatDetails": None,
        "agent": {"id": aid, "name": "researcher"}, "input": {"topic": "tides"}, "callback": envelope["callback"],
    }
    # this attempt's callback: the public API base, a token good for this attempt only
    callback = envelope["callback"]
    assert callback["url"] == f"http://127.0.0.1:8000/api/callbacks/{sid}/1" and callback["heartbeatSeconds"] is None
    assert callback["token"].startswith(aid + ".") and len(callback["token"]) > len(aid) + 40
    s = session(api, aid, sid)
    assert s["status"] == "SUCCEEDED" and s["output"] == {"summary": "done"}
    assert envelope["deadline"] == "2026-03-02T12:04:30+00:00"  # start (the fixed clock) + 300 s
    with pytest.raises(WebhookVerificationError):
        Webhook(api.post("/api/agents/" + aid + "/signing-secret", {"revokePrevious": True}).json["signingSecret"]) \
            .verify(req["body"], headers)


def test_output_and_usage_202_and_429_as_the_executor_reports_them(api, system, agent_server):
    aid = create_webhook(api, agent_server.url)["id"]
    sid = run_now(api, aid)
    ok = execute_once(system, aid, sid)
    assert ok.ok and ok.output == {"summary": "done"}
    assert ok.usage == {"inputTokens": 10, "outputTokens": 5, "costUsd": 0.002}

    agent_server.answer = (202, {}, b"working on it")
    accepted = execute_once(system, aid, sid)
    assert accepted.accepted and not accepted.ok and accepted.category is None

    agent_server.answer = (429, {"Retry-After": "17"}, b"")
    limited = execute_once(system, aid, sid)
    assert limited.category is ErrorCategory.RATE_LIMITED and limited.retry_after == 17.0

    agent_server.answer = (302, {"Location": "http://127.0.0.1:1/elsewhere"}, b"")
    moved = execute_once(system, aid, sid)
    assert moved.category is ErrorCategory.PERMANENT and "never followed" in moved.message
    assert len(agent_server.requests) == 4  # the redirect was not followed

    big = "x" * 70_000
    agent_server.answer = (200, {"Content-Type": "text/plain"}, big.encode())
    kept = execute_once(system, aid, sid)
    assert kept.ok and kept.output == {"truncated": True, "bytes": 70_000, "preview": "x" * 4096}
    agent_server.answer = (200, {"Content-Type": "text/plain"}, ("y" * 60_000).encode())
    assert execute_once(system, aid, sid).output == "y" * 60_000  # up to 64 KB is kept whole, not 16 KB


def test_a_429_through_the_worker_is_rate_limited(api, system, agent_server):
    agent_server.answer = (429, {}, b"")
    aid = create_webhook(api, agent_server.url)["id"]
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["RATE_LIMITED"]
    assert session(api, aid, sid)["error"]["category"] == "RATE_LIMITED"


def test_the_systems_own_ports_are_out_of_reach(api, system):
    port = system.settings.api_port
    aid = create_webhook(api, f"http://127.0.0.1:{port}/api/health", maxRetries=0)["id"]
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["PERMANENT"]
    assert "REST API port" in session(api, aid, sid)["error"]["message"]


# --- config and timeouts ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["webhook-id", "Webhook-Signature", "Host", "Content-Type", "content-length"])
def test_reserved_headers_are_refused_naming_config_headers(api, agent_server, name):
    r = api.post("/api/agents", {"name": "a", "kind": "webhook",
                                 "config": {"url": agent_server.url, "headers": {name: "x"}}})
    assert r.status_code == 400 and r.json["field"] == "config.headers" and name in r.json["message"]


def test_timeouts_up_to_a_day_for_contract_kinds_with_a_warning_beyond_the_sync_limit(api, agent_server):
    long = create_webhook(api, agent_server.url, timeoutSeconds=86400)
    assert long["timeoutSeconds"] == 86400 and "SCHEDULER_SYNC_WAIT_SECONDS" in long["warnings"][0]
    short = create_webhook(api, agent_server.url, timeoutSeconds=600)
    assert "warnings" not in short
    r = api.patch(f"/api/agents/{short['id']}", {"timeoutSeconds": 7200})
    assert r.status_code == 200 and r.json["warnings"] and "signingSecret" not in r.json
    for body in ({"name": "e", "kind": "echo", "timeoutSeconds": 901},
                 {"name": "w", "kind": "webhook", "config": {"url": agent_server.url}, "timeoutSeconds": 86401}):
        r = api.post("/api/agents", body)
        assert r.status_code == 400 and r.json["field"] == "timeoutSeconds", r.body
    echo = api.post("/api/agents", {"name": "e", "kind": "echo"}).json
    r = api.patch(f"/api/agents/{echo['id']}", {"timeoutSeconds": 1000})
    assert r.status_code == 400 and r.json["field"] == "timeoutSeconds"


@pytest.mark.parametrize("settings_overrides", [{"sync_wait_seconds": 120}])
def test_the_sync_limit_is_the_setting(api, agent_server, settings_overrides):
    assert "120 s" in create_webhook(api, agent_server.url, timeoutSeconds=121)["warnings"][0]
    assert "warnings" not in create_webhook(api, agent_server.url, timeoutSeconds=120)


# --- the secret: encrypted, shown once, rotated --------------------------------------------------
def test_the_secret_is_stored_encrypted_with_kms_bound_to_the_agent(api, system, agent_server):
    created = create_webhook(api, agent_server.url)
    item = AgentTenantModel.get("tenant-a", created["id"])
    stored = json.dumps(item.signing_keys)
    assert created["signingSecret"] not in stored and created["signingSecret"][6:] not in stored
    kms = boto3.client("kms", region_name="us-east-1")
    blob = base64.b64decode(item.signing_keys["current"])
    plain = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenantId": "tenant-a", "agentId": created["id"]})
    assert plain["Plaintext"].decode() == created["signingSecret"]
    assert plain["KeyId"].endswith(system.settings.signing_key_id)
    with pytest.raises(ClientError):  # bound to this agent: another agent's context does not decrypt it
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"tenantId": "tenant-a", "agentId": "agt_other"})


def test_rotation_signs_with_both_secrets_for_a_day_unless_revoked(api, system, clock, agent_server):
    created = create_webhook(api, agent_server.url)
    old, aid = created["signingSecret"], created["id"]
    r = api.post(f"/api/agents/{aid}/signing-secret")
    assert r.status_code == 200 and r.json["signingSecret"] != old
    new = r.json["signingSecret"]
    assert r.json["previousValidUntil"] == "2026-03-02T11:59:30+00:00".replace("02T", "03T")

    run_now(api, aid)
    work(system, take(system))
    first = agent_server.requests[-1]
    assert len(first["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(first["body"], first["headers"])

    clock.advance(86400)  # the overlap is over: only the new secret signs
    run_now(api, aid)
    work(system, take(system))
    later = agent_server.requests[-1]
    Webhook(new).verify(later["body"], later["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(later["body"], later["headers"])

    newest = api.post(f"/api/agents/{aid}/signing-secret", {"revokePrevious": True}).json
    assert newest["previousValidUntil"] is None
    run_now(api, aid)
    work(system, take(system))
    last = agent_server.requests[-1]
    assert len(last["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(newest["signingSecret"]).verify(last["body"], last["headers"])


def test_rotation_is_for_the_callers_webhook_agents_only(api, other_api, agent_server):
    aid = create_webhook(api, agent_server.url)["id"]
    assert other_api.post(f"/api/agents/{aid}/signing-secret").status_code == 404
    echo = api.post("/api/agents", {"name": "e", "kind": "echo"}).json["id"]
    r = api.post(f"/api/agents/{echo}/signing-secret")
    assert r.status_code == 400 and "webhook" in r.json["message"]
    r = api.post(f"/api/agents/{aid}/signing-secret", {"revokePrevious": "yes"})
    assert r.status_code == 400 and r.json["field"] == "revokePrevious"


def test_an_agent_that_becomes_a_webhook_gets_its_secret_in_that_answer(api, agent_server):
    echo = api.post("/api/agents", {"name": "e", "kind": "echo"}).json
    r = api.patch(f"/api/agents/{echo['id']}", {"kind": "webhook", "config": {"url": agent_server.url}})
    assert r.status_code == 200 and r.json["signingSecret"].startswith("whsec_")
    again = api.patch(f"/api/agents/{echo['id']}", {"description": "d"})
    assert "signingSecret" not in again.json


def test_the_secret_appears_in_no_other_answer_log_or_event(api, system, agent_server, caplog):
    with caplog.at_level(logging.DEBUG, logger="agent_scheduler"):
        created = create_webhook(api, agent_server.url)
        aid = created["id"]
        rotated = api.post(f"/api/agents/{aid}/signing-secret").json["signingSecret"]
        run_now(api, aid)
        assert work(system, take(system)) == ["succeeded"]
        agent_server.answer = (500, {}, b"boom")
        run_now(api, aid)
        work(system, take(system))
    secrets = [created["signingSecret"], rotated]
    seen = [
        api.get(f"/api/agents/{aid}").body,
        api.get("/api/agents").body,
        api.get("/api/events?since=0").body,
        api.get(f"/api/agents/{aid}/sessions").body,
        api.patch(f"/api/agents/{aid}", {"description": "x"}).body,
        caplog.text,
        " ".join(repr(vars(r)) for r in caplog.records),
        json.dumps([r["body"].decode() for r in agent_server.requests]),
    ]
    text = " ".join(s.decode() if isinstance(s, bytes) else s for s in seen)
    assert "agent:completed" in text  # the events were there to look at
    for secret in secrets:
        assert secret not in text and secret[6:] not in text


def test_the_example_agent_runs_through_the_worker(api, system):
    from examples.webhook_agent import make_server

    secrets: list[str] = []
    server = make_server(secrets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        created = create_webhook(api, f"http://127.0.0.1:{server.server_address[1]}/")
        secrets.append(created["signingSecret"])  # what its author puts in AGENT_SIGNING_SECRET
        sid = run_now(api, created["id"], input={"text": "one two three four"})
        assert work(system, take(system)) == ["succeeded"]
        assert session(api, created["id"], sid)["output"] == {"words": 4}
    finally:
        server.shutdown()
        server.server_close()
