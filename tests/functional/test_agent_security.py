"""Agents reach only what their tenant may, through the API and the worker (moto)."""
from __future__ import annotations

import io
import json
import logging

import pytest

from chalicelib.agents.policy import AgentPolicy
from tests.functional.helpers import QuietHandler, base_url, local_server, take, work
from tests.functional.test_worker import run_now, session

TOKEN = "sk-live-4f9a1c2b7e"


def create(api, kind, config, **extra):
    return api.post("/api/agents", {"name": "a", "kind": kind, "config": config, **extra})


# --- lambda: a tenant's functions only ------------------------------------------------------
def test_saving_another_tenants_function_is_a_400_naming_the_field(api):
    r = create(api, "lambda", {"functionName": "agent-scheduler-agent-tenant-b-report"})
    assert r.status_code == 400
    assert r.json["field"] == "config.functionName"
    assert "agent-scheduler-agent-tenant-a-*" in r.json["message"]

    arn = "arn:aws:lambda:us-east-1:123456789012:function:agent-scheduler-agent-tenant-a-report:prod"
    ok = create(api, "lambda", {"functionName": arn})
    assert ok.status_code == 201, ok.body
    r = api.patch(f"/api/agents/{ok.json['id']}", {"config": {"functionName": "agent-scheduler-agent-tenant-b-x"}})
    assert r.status_code == 400 and r.json["field"] == "config.functionName"


class FakeLambdaClient:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def invoke(self, **kwargs):
        self.calls.append(kwargs)
        return {"StatusCode": 200, "Payload": io.BytesIO(b'{"done": true}')}


def test_the_worker_invokes_only_the_runs_tenants_functions(api, system, monkeypatch):
    client = FakeLambdaClient()
    system._clients["lambda"] = client  # what the worker's container hands the kind
    aid = create(api, "lambda", {"functionName": "agent-scheduler-agent-tenant-a-report"}, maxRetries=0).json["id"]
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["succeeded"]
    assert session(api, aid, sid)["output"] == {"done": True}
    assert [c["FunctionName"] for c in client.calls] == ["agent-scheduler-agent-tenant-a-report"]

    # The operator narrows the rule: the stored agent is refused at its next run.
    monkeypatch.setenv("SCHEDULER_LAMBDA_ALLOWED", "team-{tenant}-*")
    system.__dict__["agent_policy"] = AgentPolicy(lambda_allowed="team-{tenant}-*")
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["PERMANENT"]
    s = session(api, aid, sid)
    assert s["status"] == "DEAD"
    assert "refused function 'agent-scheduler-agent-tenant-a-report'" in s["error"]["message"]
    assert len(client.calls) == 1


# --- http: secrets stay out of logs and errors ------------------------------------------------
class Echo(QuietHandler):
    def do_GET(self):
        self.reply(403, json.dumps(dict(self.headers.items())).encode(), {"Content-Type": "application/json"})


@pytest.fixture
def echo_url():
    with local_server(Echo) as server:
        yield base_url(server)


def test_a_failed_runs_logs_and_error_carry_no_secret(api, system, echo_url, caplog):
    config = {
        "url": f"{echo_url}/private?api_key=query-secret-1",
        "headers": {"Authorization": f"Bearer {TOKEN}", "X-Shop-Pass": "shop-pass-99", "X-Trace": "t-1"},
        "secretHeaders": ["X-Shop-Pass"],
    }
    aid = create(api, "http", config, maxRetries=0).json["id"]
    # INFO: the application's level in Lambda and locally. (The AWS SDK's DEBUG wire logs
    # print request bodies, stored agent configs included: never enable them in production.)
    with caplog.at_level(logging.INFO):
        sid = run_now(api, aid)
        assert work(system, take(system)) == ["PERMANENT"]
    error = session(api, aid, sid)["error"]["message"]
    assert "HTTP 403" in error and "t-1" in error and "[redacted]" in error
    logged = caplog.text + " ".join(repr(vars(r)) for r in caplog.records)
    assert "agent:failed" in logged
    for secret in (TOKEN, "shop-pass-99", "query-secret-1"):
        assert secret not in error
        assert secret not in logged
