"""Every AWS call each Lambda function makes is granted to it in infra/access.py.

The functions' code paths run in-process against moto (REST routes through
Chalice's test client, the tick, the worker, the WebSocket handlers); every
botocore call is recorded with the function it ran in, translated to the IAM
action and resource it needs, and looked up in that function's grants.
(test_infra.py checks the synthesized roles hold exactly those grants.)
"""
from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from datetime import datetime, timezone

import boto3
import botocore.client
import pytest
from moto import mock_aws

from chalicelib.adapters.provision import provision
from chalicelib.api.auth import issue
from chalicelib.clock import FixedClock
from chalicelib.services import wiring
from chalicelib.services.container import Container
from chalicelib.settings import Settings
from infra import access
from infra.config import FUNCTIONS, LAMBDA_ALLOWED_DEFAULT, iam_function_pattern

SECRET = "coverage-secret"
T0 = datetime(2026, 3, 2, 11, 59, 30, tzinfo=timezone.utc)
WS_ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/api"
AGENT_FUNCTION = "agent-scheduler-agent-tenant-a-coverage"  # tenant-a's, by the default pattern
AGENT_PATTERN = iam_function_pattern(LAMBDA_ALLOWED_DEFAULT)  # what the worker's role allows

_TX = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
_SQS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
        "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


class Recorder:
    def __init__(self, settings: Settings) -> None:
        self.current: str | None = None  # a plain attribute: the pusher's pool threads must see it
        self.calls: list[tuple[str, str, str, dict]] = []
        self.settings = settings
        self.container = None

    def __call__(self, function: str):
        recorder = self

        class _Scope:
            def __enter__(self):
                recorder.current = function
                # Each function is its own Lambda container: the JWT secret is read (from
                # Secrets Manager) on first use in each one that needs it, and only there.
                if recorder.container is not None:
                    recorder.container.__dict__.pop("jwt_secret", None)

            def __exit__(self, *exc):
                recorder.current = None

        return _Scope()

    # --- (function, service, operation, params) -> {(action, resource symbol)} ----------------------
    def _table_key(self, name: str) -> str:
        s = self.settings
        names = {s.agents_table: "agents", s.sessions_table: "sessions", s.control_table: "control",
                 s.connections_table: "connections", s.events_table: "events"}
        return names.get(name, f"?{name}")

    def needs(self, service: str, op: str, p: dict) -> set[tuple[str, str]]:
        if service == "dynamodb":
            if op == "TransactWriteItems":
                return {(f"dynamodb:{_TX[k]}", f"table:{self._table_key(v['TableName'])}")
                        for item in p["TransactItems"] for k, v in item.items()}
            if op in ("BatchGetItem", "BatchWriteItem"):
                return {(f"dynamodb:{op}", f"table:{self._table_key(t)}") for t in p["RequestItems"]}
            key = self._table_key(p["TableName"])
            resource = f"index:{key}:{p['IndexName']}" if p.get("IndexName") else f"table:{key}"
            return {(f"dynamodb:{op}", resource)}
        if service == "sqs":
            queues = {self.settings.work_queue_url: "queue:work", self.settings.dlq_url: "queue:dlq"}
            return {(f"sqs:{_SQS.get(op, op)}", queues.get(p["QueueUrl"], f"?{p['QueueUrl']}"))}
        if service == "sns":
            assert p["TopicArn"] == self.settings.alert_topic_arn
            return {(f"sns:{op}", "topic:alerts")}
        if service == "lambda":
            name = p["FunctionName"].split(":function:")[-1].split(":")[0]
            resource = "lambda:agents" if fnmatch.fnmatch(name, AGENT_PATTERN) else f"?{name}"
            return {("lambda:InvokeFunction" if op == "Invoke" else f"lambda:{op}", resource)}
        if service == "apigatewaymanagementapi":
            resource = {"PostToConnection": "ws:connections", "DeleteConnection": "ws:close"}.get(op, f"ws:connections:{op}")
            return {("execute-api:ManageConnections", resource)}
        if service == "secretsmanager":
            return {(f"secretsmanager:{op}", "secret:jwt")}
        if service == "kms":
            resource = "kms:signing" if p.get("KeyId", self.settings.signing_key_id) == self.settings.signing_key_id \
                else f"?{p.get('KeyId')}"
            return {(f"kms:{op}", resource)}
        return {(f"{service}:{op}", "?")}

    def observed(self) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set] = defaultdict(set)
        for function, service, op, params in self.calls:
            out[function] |= self.needs(service, op, params)
        return out


@pytest.fixture
def recorder(monkeypatch):
    with mock_aws():
        secret_arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="jwt", SecretString=SECRET)["ARN"]
        base = Settings.from_env({"SCHEDULER_JWT_SECRET": SECRET}).with_(
            ws_endpoint=WS_ENDPOINT, alert_after_failures=1, jwt_secret="", jwt_secret_arn=secret_arn)
        settings = provision(base, boto3.client("sqs", region_name="us-east-1"),
                             boto3.client("sns", region_name="us-east-1"), boto3.client("kms", region_name="us-east-1"))
        rec = Recorder(settings)
        original = botocore.client.BaseClient._make_api_call

        def recording(client, operation, params):
            if rec.current is not None:
                rec.calls.append((rec.current, client.meta.service_model.service_name, operation, params))
            return original(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
        clock = FixedClock(T0)
        container = Container(settings, clock=clock)
        rec.container = container
        wiring.set_container(container)
        try:
            yield rec, container, clock
        finally:
            wiring.set_container(None)


def _take(container) -> list[dict]:
    """Every message on the work queue, delayed or not (the fixed clock never reaches a delay)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    name = container.settings.work_queue_url.rstrip("/").rsplit("/", 1)[-1]
    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(name)
    bodies = [json.loads(m.body) for m in queue._messages]
    queue._messages = []
    return bodies


def _drain(rec, container) -> None:
    """Run the worker as the event source would, on everything queued (and what each run admits)."""
    with rec("worker"):
        for _ in range(5):
            bodies = _take(container)
            if not bodies:
                return
            for body in bodies:
                container.worker.handle(body)


def test_every_call_is_granted(recorder):
    from chalice.test import Client

    from app import app
    from chalicelib.services import ws

    rec, c, clock = recorder
    token, admin = issue("tenant-a", SECRET), issue("ops", SECRET, scopes="admin")
    statuses = []

    with Client(app) as client:
        def call(method, path, body=None, who=token, key=None):
            headers = {"Authorization": f"Bearer {who}", "Content-Type": "application/json"}
            if key:  # an idempotency record: put, then kept (2xx) or deleted (an error)
                headers["Idempotency-Key"] = key
            with rec("api_handler"):
                r = client.http.request(method, path, body=json.dumps(body) if body is not None else None,
                                        headers=headers)
            statuses.append((method, path, r.status_code))
            return json.loads(r.body) if r.body else {}

        def ws_event(handler, function, connection_id, **extra):
            with rec(function):
                return handler(c, {"requestContext": {"connectionId": connection_id}, **extra})

        ws_event(ws.on_connect, "websocket_connect", "conn-1", queryStringParameters={"token": token})
        echo = call("POST", "/api/agents", {"name": "echo", "kind": "echo", "budget": {"maxRunsPerDay": 100},
                                            "config": {"usage": {"costUsd": 0.01}}}, key="create-echo")
        call("POST", "/api/agents/missing/run", {}, key="run-missing")
        fail = call("POST", "/api/agents", {"name": "fail", "kind": "fail", "maxRetries": 0, "pauseAfterFailures": 1,
                                            "config": {"category": "PERMANENT"}})
        call("POST", f"/api/agents/{fail.get('id')}/schedule", {"cronExpression": "30 * * * *"})
        lam = call("POST", "/api/agents", {"name": "lambda", "kind": "lambda", "maxRetries": 0,
                                           "config": {"functionName": AGENT_FUNCTION}})
        hook = call("POST", "/api/agents", {"name": "hook", "kind": "webhook", "maxRetries": 0,
                                            "config": {"url": "http://127.0.0.1:9/"}})  # signs, then finds no one
        ws_event(ws.on_message, "websocket_message", "conn-1",
                 body=json.dumps({"action": "subscribe", "agentIds": ["*", echo.get("id", "x")]}))
        ws_event(ws.on_message, "websocket_message", "conn-1", body=json.dumps({"action": "ping"}))
        call("POST", f"/api/agents/{echo.get('id')}/schedule", {"cronExpression": "* * * * *"})
        call("GET", f"/api/agents/{echo.get('id')}/schedule")
        call("PATCH", f"/api/agents/{echo.get('id')}", {"description": "covered"})
        call("GET", "/api/agents")
        call("GET", f"/api/agents/{echo.get('id')}")
        for agent in (fail, lam, hook, echo):
            call("POST", f"/api/agents/{agent.get('id')}/run", {})
        call("GET", "/api/scheduler/status")
        clock.advance(40)
        with rec("tick"):
            c.dispatcher.tick()
        _drain(rec, c)
        call("GET", f"/api/agents/{echo.get('id')}/sessions")
        run = call("POST", f"/api/agents/{echo.get('id')}/run", {})
        call("GET", f"/api/agents/{echo.get('id')}/sessions/{run.get('sessionId')}")
        call("POST", f"/api/agents/{echo.get('id')}/sessions/{run.get('sessionId')}/cancel")
        call("POST", "/api/sessions/cancel", {"agentIds": [echo.get("id")]})
        call("GET", "/api/dlq")
        call("GET", "/api/dlq", who=admin)
        call("POST", "/api/dlq/redrive", {})
        call("POST", "/api/scheduler/pause", who=admin)
        call("POST", "/api/scheduler/resume", who=admin)
        call("POST", "/api/schedules/validate", {"cronExpression": "0 9 * * *"})
        call("POST", "/api/schedules/bulk", {"operations": [{"agentId": echo.get("id"), "action": "disable"}]})
        call("GET", "/api/schedules/conflicts")
        call("GET", f"/api/agents/{echo.get('id')}/schedule/history")
        call("POST", f"/api/agents/{echo.get('id')}/backfill", {"from": "2026-03-02T11:55:00Z", "to": "2026-03-02T11:59:00Z"})
        call("GET", f"/api/agents/{echo.get('id')}/fires?from=2026-03-02T11:00:00Z&to=2026-03-02T13:00:00Z")
        call("DELETE", f"/api/agents/{echo.get('id')}/schedule")
        call("DELETE", f"/api/agents/{lam.get('id')}")
        clock.advance(60)
        with rec("tick"):
            c.dispatcher.tick()
        _drain(rec, c)
        ws_event(ws.on_disconnect, "websocket_disconnect", "conn-1")
        # The event stream: polling, a ticket, a connect with it, a resume with since.
        call("GET", "/api/events?since=0&limit=5")
        ticket = call("POST", "/api/events/ticket")
        ws_event(ws.on_connect, "websocket_connect", "conn-2", queryStringParameters={"ticket": ticket.get("ticket")})
        ws_event(ws.on_message, "websocket_message", "conn-2",
                 body=json.dumps({"action": "subscribe", "agentIds": ["*"], "since": 1}))
        ws_event(ws.on_disconnect, "websocket_disconnect", "conn-2")

    observed = rec.observed()
    assert set(observed) == set(FUNCTIONS), f"the scenario did not exercise every function: {sorted(observed)}"
    # The scenario still reaches the paths that need the narrowest grants (else it proves little).
    reached = {
        "worker": {("sns:Publish", "topic:alerts"), ("lambda:InvokeFunction", "lambda:agents"),
                   ("kms:Decrypt", "kms:signing"),
                   ("sqs:SendMessage", "queue:dlq"), ("execute-api:ManageConnections", "ws:connections"),
                   ("dynamodb:PutItem", "table:agents")},  # pauseAfterFailures disabled a schedule (history)
        "tick": {("dynamodb:Query", "index:agents:due-index"), ("execute-api:ManageConnections", "ws:connections")},
        "api_handler": {("sqs:ReceiveMessage", "queue:dlq"), ("sqs:SendMessage", "queue:work"),
                        ("secretsmanager:GetSecretValue", "secret:jwt"), ("kms:Encrypt", "kms:signing")},
        "websocket_connect": {("secretsmanager:GetSecretValue", "secret:jwt")},
    }
    for function, needed in reached.items():
        assert needed <= observed[function], (function, sorted(needed - observed[function]), statuses)
    for function in ("tick", "worker", "websocket_message", "websocket_disconnect"):  # they never check a token
        assert not any(action.startswith("secretsmanager:") for action, _ in observed[function]), function
    missing = {}
    for function, needed in observed.items():
        granted = {(action, a.resource) for a in access.grants(function) for action in a.actions}
        if needed - granted:
            missing[function] = sorted(needed - granted)
    assert not missing, f"calls not granted in infra/access.py: {missing}\n(REST calls made: {statuses})"
