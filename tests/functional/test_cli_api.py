"""The `agent-scheduler` CLI against the real app on moto: every HTTP call goes through
chalice.test.Client by way of an httpx transport; waiting runs the worker on what is queued."""
from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from agent_scheduler.cli.main import Deps, app
from chalicelib.api.auth import issue
from tests.functional.conftest import SECRET, Api
from tests.functional.helpers import drain

runner = CliRunner()

AGENTS = """
agents:
  - name: report
    kind: echo
    config: {message: good morning}
    description: the morning report
    schedule:
      cronExpression: "30 9 * * MON-FRI"
      timezone: America/New_York
  - name: broken
    kind: fail
    config: {category: PERMANENT}
    maxRetries: 0
  - name: napper
    kind: sleep
    config: {seconds: 0}
"""


class ChaliceTransport(httpx.BaseTransport):
    """httpx requests served by chalice.test.Client (the app in-process)."""

    def __init__(self, client) -> None:
        self.client = client
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode("ascii")
        headers = {k: v for k, v in request.headers.items()}
        body = request.read() or None
        resp = self.client.http.request(request.method, path, headers=headers, body=body)
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.body or b"", request=request)


@pytest.fixture
def cli(system, chalice_client, tmp_path):
    token = issue("tenant-cli", SECRET)
    transport = ChaliceTransport(chalice_client)
    deps = Deps(transport=transport, sleep=lambda seconds: drain(system), env={}, cwd=tmp_path)

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(app, ["--url", "http://local.test/api", "--token", token, *args], obj=deps, input=input)
        assert token not in result.output
        return result

    invoke.transport = transport
    invoke.api = Api(chalice_client, token)
    return invoke


def out(result) -> dict:
    return json.loads(result.stdout)


def writes(transport: ChaliceTransport) -> int:
    return sum(1 for r in transport.requests if r.method != "GET")


def test_apply_twice_then_dry_run_then_prune(cli, tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(AGENTS)
    r = cli("agents", "apply", "-f", str(path), "--json")
    assert r.exit_code == 0, r.output
    assert out(r)["summary"] == {"created": 3, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0}
    before = writes(cli.transport)
    r = cli("agents", "apply", "-f", str(path), "--json")
    assert r.exit_code == 0 and out(r)["summary"]["unchanged"] == 3, r.output
    assert writes(cli.transport) == before  # the same file twice changes nothing

    changed = AGENTS.replace("good morning", "hello").replace("timezone: America/New_York", "timezone: Europe/Paris")
    path.write_text(changed)
    r = cli("agents", "apply", "-f", str(path), "--dry-run", "--json")
    report = next(x for x in out(r)["results"] if x["name"] == "report")
    assert report["action"] == "updated" and writes(cli.transport) == before
    assert {c["field"]: (c["old"], c["new"]) for c in report["changes"]} == {
        "config": ({"message": "good morning"}, {"message": "hello"}),
        "schedule.timezone": ("America/New_York", "Europe/Paris")}
    r = cli("agents", "apply", "-f", str(path))
    assert r.exit_code == 0 and "1 updated, 2 unchanged" in r.stdout
    shown = out(cli("schedule", "show", "report", "--json"))
    assert shown["timezone"] == "Europe/Paris" and len(shown["nextRuns"]) == 5

    cli("agents", "create", "handmade", "--kind", "echo")
    path.write_text(changed.split("  - name: broken")[0])  # report only, with its schedule
    r = cli("agents", "apply", "-f", str(path), "--prune", "--json")
    assert r.exit_code == 0 and out(r)["summary"]["deleted"] == 2
    names = sorted(a["name"] for a in out(cli("agents", "list", "--json"))["items"])
    assert names == ["handmade", "report"]  # an agent the set did not create is never pruned


def test_run_wait_exit_codes_dlq_and_redrive(cli, tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(AGENTS)
    assert cli("agents", "apply", "-f", str(path)).exit_code == 0

    r = cli("run", "report", "--input", '{"day": "monday"}', "--wait", "--json")
    assert r.exit_code == 0, r.output
    done = out(r)
    assert done["status"] == "SUCCEEDED" and done["output"]["input"] == {"day": "monday"}
    r = cli("runs", "list", "report")
    assert done["sessionId"] in r.stdout and "SUCCEEDED" in r.stdout
    assert out(cli("runs", "show", "report", done["sessionId"], "--json"))["trigger"] == "MANUAL"

    r = cli("run", "broken", "--wait")
    assert r.exit_code == 1 and "DEAD" in r.stdout
    dead = out(cli("dlq", "list", "--json"))["items"]
    assert len(dead) == 1
    r = cli("dlq", "redrive", "--dry-run", "--json")
    assert out(r)["wouldRedrive"][0]["sessionId"] == dead[0]["sessionId"]
    assert len(out(cli("dlq", "list", "--json"))["items"]) == 1
    r = cli("dlq", "redrive", dead[0]["sessionId"], "--json")
    assert r.exit_code == 0 and out(r)["redriven"] == 1

    status = out(cli("status", "--json"))
    assert "maxConcurrentAgents" in status


def test_idempotency_keys_reach_the_api_and_errors_keep_their_shape(cli):
    r = cli("agents", "create", "solo", "--kind", "echo", "--idempotency-key", "key-1", "--json")
    assert r.exit_code == 0
    post = next(q for q in cli.transport.requests if q.method == "POST")
    assert post.headers["Idempotency-Key"] == "key-1"
    r = cli("agents", "create", "x" * 201, "--json")
    assert r.exit_code == 1 and out(r)["error"]["code"] == "VALIDATION_ERROR" and out(r)["error"]["field"] == "name"
    r = cli("schedule", "set", "solo", "61 * * * *")
    assert r.exit_code == 1 and "cronExpression" in r.stderr
    assert cli("schedule", "set", "solo", "@daily", "--priority", "urgent").exit_code == 2
    r = cli("runs", "cancel", "solo", "no-such-session")
    assert r.exit_code == 1 and "NOT_FOUND" in r.stderr


def test_the_agents_file_of_the_cli_docs_applies_and_stays_applied(cli, tmp_path):
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "agents.yaml"
    path.write_text(example)
    r = cli("agents", "apply", "-f", str(path), "--json")
    assert r.exit_code == 0 and out(r)["summary"]["created"] == 2, r.output
    r = cli("agents", "apply", "-f", str(path), "--json")
    assert out(r)["summary"]["unchanged"] == 2, r.output


def test_agents_list_selects_by_label(cli, chalice_client):
    from tests.functional.conftest import Api

    api = Api(chalice_client, issue("tenant-cli", SECRET))
    api.post("/api/agents", {"name": "a", "kind": "echo", "labels": {"team": "ops", "tier": "1"}})
    api.post("/api/agents", {"name": "b", "kind": "echo", "labels": {"team": "ops"}})
    api.post("/api/agents", {"name": "c", "kind": "echo"})
    names = lambda *a: sorted(x["name"] for x in out(cli("agents", "list", *a, "--json"))["items"])  # noqa: E731
    assert names("--label", "team=ops") == ["a", "b"]
    assert names("--label", "team=ops", "--label", "tier=1") == ["a"]
    assert names() == ["a", "b", "c"]
    assert cli("agents", "list", "--label", "team").exit_code == 2


LIMITED = """
agents:
  - name: limited
    kind: echo
    config: {usage: {inputTokens: 1200, outputTokens: 300, costUsd: 0.0125}}
    maxConcurrency: 2
    throttle: {limit: 10, periodSeconds: 60}
    pools: [gpu]
    budget: {maxRunsPerDay: 5}
    pauseAfterFailures: 3
    heartbeatSeconds: 30
  - name: hook
    kind: webhook
    config: {url: "https://agents.example.com/run"}
"""


def test_pools_set_list_get_and_rm(cli):
    r = cli("pools", "set", "gpu", "--max-concurrency", "2", "--throttle", "10/1m", "--json")
    assert r.exit_code == 0, r.output
    assert out(r) | {"maxConcurrency": 2, "throttle": {"limit": 10, "periodSeconds": 60}} == out(r)
    r = cli("pools", "set", "gpu", "--max-concurrency", "3", "--json")  # the throttle keeps its value
    assert out(r)["maxConcurrency"] == 3 and out(r)["throttle"] == {"limit": 10, "periodSeconds": 60}
    r = cli("pools", "set", "gpu", "--no-throttle", "--json")
    assert out(r)["maxConcurrency"] == 3 and out(r)["throttle"] is None
    r = cli("pools", "list")
    assert r.exit_code == 0 and "gpu" in r.stdout and "0/3" in r.stdout
    assert out(cli("pools", "get", "gpu", "--json"))["running"] == 0
    assert cli("pools", "set", "gpu", "--throttle", "ten a minute").exit_code == 2
    assert cli("pools", "set", "gpu", "--max-concurrency", "0").exit_code == 2

    cli("agents", "create", "user", "--kind", "echo")
    agent_id = out(cli("agents", "get", "user", "--json"))["id"]
    cli.api.patch(f"/api/agents/{agent_id}", {"pools": ["gpu"]})
    r = cli("pools", "rm", "gpu", "--json")
    assert r.exit_code == 1 and out(r)["error"]["status"] == 409
    cli.api.patch(f"/api/agents/{agent_id}", {"pools": None})
    assert cli("pools", "rm", "gpu").exit_code == 0
    r = cli("pools", "get", "gpu", "--json")
    assert r.exit_code == 1 and out(r)["error"]["code"] == "NOT_FOUND"


def test_apply_with_limits_is_stable_and_shows_secrets_only_when_asked(cli, tmp_path):
    assert cli("pools", "set", "gpu", "--max-concurrency", "1").exit_code == 0
    path = tmp_path / "limits.yaml"
    path.write_text(LIMITED)
    r = cli("agents", "apply", "-f", str(path), "--json")
    assert r.exit_code == 0 and out(r)["summary"]["created"] == 2, r.output
    assert "whsec_" not in r.output
    r = cli("agents", "apply", "-f", str(path), "--json")  # budget.timezone/onExhausted the server filled in
    assert out(r)["summary"]["unchanged"] == 2, r.output

    r = cli("agents", "get", "limited")
    for shown in ("10 per 60 s", "gpu", "5 runs per day (UTC; when used up: SKIP)", "runs 0/5"):
        assert shown in r.stdout, r.stdout

    path.write_text(LIMITED.replace("    budget: {maxRunsPerDay: 5}\n", "").replace("    heartbeatSeconds: 30\n", ""))
    r = cli("agents", "apply", "-f", str(path), "--dry-run", "--json")
    [limited] = [x for x in out(r)["results"] if x["name"] == "limited"]
    assert {c["field"] for c in limited["changes"]} == {"budget", "heartbeatSeconds"}
    assert cli("agents", "apply", "-f", str(path)).exit_code == 0
    got = out(cli("agents", "get", "limited", "--json"))
    assert got["budget"] is None and got["heartbeatSeconds"] is None and got["maxConcurrency"] == 2

    cli("agents", "delete", "hook")
    r = cli("agents", "apply", "-f", str(path), "--show-secrets", "--json")
    [hook] = [x for x in out(r)["results"] if x["name"] == "hook"]
    assert hook["action"] == "created" and hook["signingSecret"].startswith("whsec_")
    assert "whsec_" not in cli("agents", "get", "hook", "--json").output

    r = cli("agents", "rotate-secret", "hook", "--revoke-previous")
    assert r.exit_code == 0 and "signingSecret: whsec_" in r.stdout
    rotated = out(cli("agents", "rotate-secret", "hook", "--json"))
    assert rotated["signingSecret"].startswith("whsec_") and rotated["previousValidUntil"]
    r = cli("agents", "rotate-secret", "limited", "--json")
    assert r.exit_code == 1 and out(r)["error"]["field"] == "kind"


def test_runs_show_says_why_a_run_waits_and_what_it_used_and_bulk_cancel(cli, tmp_path, admin_api):
    path = tmp_path / "limits.yaml"
    path.write_text(LIMITED.replace("    pools: [gpu]\n", ""))
    assert cli("agents", "apply", "-f", str(path)).exit_code == 0
    r = cli("run", "limited", "--wait", "--json")
    assert r.exit_code == 0, r.output
    done = out(r)
    r = cli("runs", "show", "limited", done["sessionId"])
    assert "1200 in / 300 out tokens, $0.0125" in r.stdout, r.stdout
    assert "runs 1/5" in cli("agents", "get", "limited").stdout

    admin_api.post("/api/scheduler/pause", {})
    waiting = [out(cli("run", "limited", "--json"))["sessionId"] for _ in range(2)]
    r = cli("runs", "show", "limited", waiting[0])
    assert "SCHEDULER_PAUSED" in r.stdout
    assert "SCHEDULER_PAUSED" in cli("runs", "list", "limited", "--status", "QUEUED").stdout

    for refused in (("runs", "cancel", "--all"), ("runs", "cancel", "--all", "--status", "QUEUED"),
                    ("runs", "cancel", "--all", "--agent", "limited", "--status", "DEAD"),
                    ("runs", "cancel", "--all", "--scheduled-before", "2026-03-02T12:00:00"),
                    ("runs", "cancel", "limited", "--status", "QUEUED"), ("runs", "cancel", "limited")):
        assert cli(*refused).exit_code == 2, refused
    assert all(out(cli("runs", "show", "limited", s, "--json"))["status"] == "QUEUED" for s in waiting)

    r = cli("runs", "cancel", "--all", "--agent", "limited", "--status", "queued", "--json")
    assert r.exit_code == 0 and out(r) == {"cancelled": 2}, r.output
    assert all(out(cli("runs", "show", "limited", s, "--json"))["status"] == "CANCELLED" for s in waiting)
    r = cli("runs", "cancel", "--all", "--scheduled-before", "2100-01-01T00:00:00Z")
    assert r.exit_code == 0 and "cancelled 0 run(s)" in r.stdout
