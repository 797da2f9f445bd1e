"""The `agent-scheduler` commands through Typer's CliRunner, against an in-memory API
served by httpx.MockTransport: exit codes, --json, tables, idempotency keys, no token leaks."""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from agent_scheduler.cli.main import Deps, app

TOKEN = "tok-3f9c2a-secret-marker"
URL = "http://api.test/api"
runner = CliRunner(env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})  # rich wraps error panels at the width


class FakeApi:
    """Just enough of the REST API, in memory; every request is recorded."""

    def __init__(self) -> None:
        self.agents: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.dlq: list[dict] = []
        self.requests: list[httpx.Request] = []
        self.fail_next: list[tuple[str | None, httpx.Response]] = []  # (method or any, answer) before the real one
        self.progress: dict[str, list[str]] = {}  # agent id -> statuses a session goes through on each read
        self.ids = itertools.count(1)
        self.created_with_key: dict[str, dict] = {}

    def add_agent(self, name: str, kind: str = "echo", **fields) -> dict:
        agent_id = f"ag_{next(self.ids):020x}"
        agent = {"id": agent_id, "name": name, "kind": kind, "config": {}, "description": None,
                 "timeoutSeconds": 300, "maxRetries": 3, "createdAt": "2026-03-02T12:00:00+00:00",
                 "updatedAt": "2026-03-02T12:00:00+00:00", "schedule": None, **fields}
        if kind == "fail":  # as the server does: the kind fills in its defaults
            agent["config"] = {"category": "AGENT_ERROR", **agent["config"]}
        self.agents[agent_id] = agent
        return agent

    @staticmethod
    def _json(status: int, body=None) -> httpx.Response:
        if body is None:
            return httpx.Response(status)
        return httpx.Response(status, json=body)

    def _not_found(self, what: str) -> httpx.Response:
        return self._json(404, {"code": "NOT_FOUND", "message": f"{what} not found"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(401, {"code": "UNAUTHORIZED", "message": "missing or invalid token"})
        if self.fail_next and self.fail_next[0][0] in (None, request.method):
            return self.fail_next.pop(0)[1]
        path = request.url.path
        body: Any = json.loads(request.content) if request.content else None
        m, parts = request.method, path.strip("/").split("/")[1:]
        if parts == ["scheduler", "status"]:
            return self._json(200, {"paused": False, "maxConcurrentAgents": 5, "running": 1, "queued": 0,
                                    "pending": {"NORMAL": 2}, "lastTickAt": None, "dlqDepth": len(self.dlq)})
        if parts == ["openapi.json"]:
            return self._json(200, {"openapi": "3.1.0", "paths": {}})
        if parts == ["events", "ticket"]:
            return self._not_found("route")
        if parts == ["agents"] and m == "GET":
            items = sorted(self.agents.values(), key=lambda a: a["id"])
            limit = int(request.url.params.get("limit", 50))
            start = int(request.url.params.get("nextToken") or 0)
            page = items[start:start + limit]
            nxt = str(start + limit) if start + limit < len(items) else None
            return self._json(200, {"items": page, "nextToken": nxt})
        if parts == ["agents"] and m == "POST":
            key = request.headers.get("Idempotency-Key")
            if key in self.created_with_key:
                return httpx.Response(201, json=self.created_with_key[key], headers={"Idempotent-Replayed": "true"})
            agent = self.add_agent(body.pop("name"), body.pop("kind"), **body)
            self.created_with_key[key] = agent
            return self._json(201, agent)
        if parts[:1] == ["agents"] and len(parts) >= 2:
            if parts[1] not in self.agents:
                return self._not_found(f"agent {parts[1]!r}")
            agent = self.agents[parts[1]]
            rest = parts[2:]
            if not rest:
                if m == "GET":
                    return self._json(200, agent)
                if m == "PATCH":
                    agent.update(body)
                    return self._json(200, agent)
                if m == "DELETE":
                    del self.agents[agent["id"]]
                    return self._json(204)
            if rest == ["schedule"]:
                if m == "POST":
                    agent["schedule"] = {"agentId": agent["id"], "timezone": "UTC", "priority": "NORMAL",
                                         "enabled": True, "catchup": "LATEST", "catchupWindowSeconds": 3600,
                                         "overlapPolicy": "SKIP", "startAt": None, "endAt": None, "jitterSeconds": 0,
                                         **body, "nextRunAt": "2026-03-03T09:30:00-05:00",
                                         "nextRuns": ["2026-03-03T09:30:00-05:00"]}
                    return self._json(200, {**agent["schedule"], "warnings": [], "conflicts": []})
                if agent["schedule"] is None:
                    return self._not_found("schedule")
                if m == "GET":
                    return self._json(200, agent["schedule"])
                agent["schedule"] = None
                return self._json(204)
            if rest == ["run"]:
                sid = f"20260302T120000000Z-m{next(self.ids):012x}"
                self.sessions[sid] = {"sessionId": sid, "agentId": agent["id"], "status": "QUEUED",
                                      "trigger": "MANUAL", "priority": "NORMAL", "attempt": 0, "error": None,
                                      "input": (body or {}).get("input")}
                return self._json(202, {"sessionId": sid, "status": "QUEUED", "agentId": agent["id"],
                                        "waitingReason": None})
            if rest == ["sessions"]:
                items = [s for s in self.sessions.values() if s["agentId"] == agent["id"]]
                return self._json(200, {"items": items, "nextToken": None})
            if rest[:1] == ["sessions"] and len(rest) >= 2:
                s = self.sessions.get(rest[1])
                if s is None:
                    return self._not_found("session")
                if rest[2:] == ["cancel"]:
                    s["status"] = "CANCELLED"
                    return self._json(202, s)
                steps = self.progress.get(agent["id"])
                if steps:
                    s["status"] = steps.pop(0)
                return self._json(200, s)
        if parts == ["dlq"]:
            return self._json(200, {"items": self.dlq, "nextToken": None})
        if parts == ["dlq", "redrive"]:
            ids = (body or {}).get("sessionIds")
            n = len([d for d in self.dlq if ids is None or d["sessionId"] in ids])
            return self._json(202, {"redriven": n})
        return self._not_found("route")

    def writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.requests if r.method not in ("GET", "HEAD")]


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def deps(api, sleeps, tmp_path) -> Deps:
    return Deps(transport=httpx.MockTransport(api), sleep=sleeps.append, env={"HOME": str(tmp_path)}, cwd=tmp_path)


def cli(deps: Deps, *args: str, input: str | None = None, url: str | None = URL, token: str | None = TOKEN):
    head = (["--url", url] if url else []) + (["--token", token] if token else [])
    result = runner.invoke(app, [*head, *args], obj=deps, input=input)
    assert TOKEN not in result.output, "the token must never be printed"
    return result


def as_json(result) -> dict:
    return json.loads(result.stdout)


# --- endpoint: options, environment, profile ------------------------------------------------------
def test_status_prints_a_table_and_json(deps, api):
    r = cli(deps, "status")
    assert r.exit_code == 0, r.output
    assert "running" in r.stdout and "maxConcurrentAgents" in r.stdout and URL in r.stdout
    r = cli(deps, "status", "--json")
    assert r.exit_code == 0 and as_json(r)["maxConcurrentAgents"] == 5


def test_no_url_anywhere_is_a_usage_error(deps):
    r = cli(deps, "status", url=None)
    assert r.exit_code == 2 and "no API URL" in r.output


def test_the_environment_then_the_profile_give_url_and_token(deps, api, tmp_path):
    from agent_scheduler.cli.profile import write_profile

    deps.env = {"SCHEDULER_URL": URL, "SCHEDULER_TOKEN": TOKEN}
    assert cli(deps, "status", url=None, token=None).exit_code == 0
    profile = write_profile(tmp_path / "repo" / ".local" / "profile.json", URL, TOKEN, "ws://ws.test")
    assert profile.stat().st_mode & 0o777 == 0o600
    deps.env, deps.cwd = {"HOME": str(tmp_path)}, tmp_path / "repo" / "sub"
    deps.cwd.mkdir()
    r = cli(deps, "status", url=None, token=None)
    assert r.exit_code == 0 and str(profile) in r.stdout  # found in a parent folder
    # an option beats the environment, which beats the profile
    deps.env = {"SCHEDULER_TOKEN": "wrong", "HOME": str(tmp_path)}
    assert cli(deps, "status", url=None, token=None).exit_code == 1
    assert cli(deps, "status", url=None).exit_code == 0


def test_an_unreadable_profile_is_a_usage_error(deps, tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    r = cli(deps, "--profile", str(bad), "status", url=None, token=None)
    assert r.exit_code == 2 and "p.json" in r.output


# --- errors -------------------------------------------------------------------------------------------
def test_an_api_error_exits_1_with_code_and_message(deps):
    r = cli(deps, "agents", "get", "ag_00000000000000000099")
    assert r.exit_code == 1 and "NOT_FOUND" in r.stderr
    r = cli(deps, "agents", "get", "ag_00000000000000000099", "--json")
    assert r.exit_code == 1 and as_json(r)["error"]["code"] == "NOT_FOUND"


def test_a_gateway_that_echoes_the_token_never_gets_it_printed(deps, api):
    api.fail_next.append((None, httpx.Response(403, json={"message": f"Invalid key=value pair in Authorization=Bearer {TOKEN}"})))
    r = cli(deps, "status")
    assert r.exit_code == 1 and "FORBIDDEN" in r.stderr and "***" in r.stderr
    api.fail_next.append((None, httpx.Response(403, json={"message": f"Authorization=Bearer {TOKEN}"})))
    r = cli(deps, "status", "--json")
    assert r.exit_code == 1 and TOKEN not in r.stdout


def test_no_answer_exits_1_after_retrying(deps, sleeps):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    deps.transport = httpx.MockTransport(refuse)
    r = cli(deps, "status")
    assert r.exit_code == 1 and "cannot reach" in r.stderr
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("args", [
    ["run", "x", "--input", "{nope"], ["agents", "create", "x", "--config", "[1]"], ["nope"],
    ["runs", "list", "x", "--limit", "0"], ["agents", "apply"],
])
def test_usage_errors_exit_2(deps, api, args):
    api.add_agent("x")
    assert cli(deps, *args).exit_code == 2


@pytest.mark.parametrize("path", [
    ["status"], ["agents", "list"], ["agents", "get"], ["agents", "create"], ["agents", "delete"], ["agents", "apply"],
    ["schedule", "set"], ["schedule", "show"], ["schedule", "rm"], ["run"], ["runs", "list"], ["runs", "show"],
    ["runs", "cancel"], ["tail"], ["dlq", "list"], ["dlq", "redrive"],
])
def test_every_command_has_help_with_an_example_and_json(deps, path):
    r = runner.invoke(app, [*path, "--help"], obj=deps)
    assert r.exit_code == 0 and "Example" in r.stdout and "--json" in r.stdout


# --- agents ------------------------------------------------------------------------------------------------
def test_agents_list_pages_through_everything(deps, api):
    for i in range(120):
        api.add_agent(f"agent-{i:03d}")
    r = cli(deps, "agents", "list", "--json")
    assert r.exit_code == 0 and len(as_json(r)["items"]) == 120
    r = cli(deps, "agents", "list")
    assert "agent-119" in r.stdout and "NAME" in r.stdout


def test_an_agent_is_found_by_name_or_id(deps, api):
    a = api.add_agent("report")
    for ref in ("report", a["id"]):
        r = cli(deps, "agents", "get", ref, "--json")
        assert r.exit_code == 0 and as_json(r)["id"] == a["id"]


def test_a_name_two_agents_share_is_refused_naming_both(deps, api):
    a, b = api.add_agent("twin"), api.add_agent("twin")
    r = cli(deps, "agents", "get", "twin")
    assert r.exit_code == 2 and a["id"] in r.output and b["id"] in r.output


def test_an_unknown_agent_exits_1(deps, api):
    r = cli(deps, "run", "ghost")
    assert r.exit_code == 1 and "ghost" in r.stderr


def test_create_sends_an_idempotency_key_and_reuses_it_when_retrying(deps, api, sleeps):
    api.fail_next.append(("POST", httpx.Response(503, json={"code": "UNAVAILABLE", "message": "try again"})))
    r = cli(deps, "agents", "create", "report", "--kind", "echo", "--config", '{"message": "hi"}', "--json")
    assert r.exit_code == 0, r.output
    posts = [q for q in api.requests if q.method == "POST"]
    keys = {q.headers["Idempotency-Key"] for q in posts}
    assert len(posts) == 2 and len(keys) == 1 and sleeps == [0.5]
    assert as_json(r)["config"] == {"message": "hi"} and len(api.agents) == 1


def test_a_non_idempotent_post_is_not_retried_after_a_5xx(deps, api):
    a = api.add_agent("report")
    sid = as_json(cli(deps, "run", "report", "--json"))["sessionId"]
    api.fail_next.append(("POST", httpx.Response(503, json={"code": "UNAVAILABLE", "message": "busy"})))
    r = cli(deps, "runs", "cancel", a["id"], sid)
    assert r.exit_code == 1 and [q.url.path for q in api.requests].count(f"/api/agents/{a['id']}/sessions/{sid}/cancel") == 1


def test_a_replayed_create_says_so_and_creates_nothing(deps, api):
    first = as_json(cli(deps, "agents", "create", "report", "--idempotency-key", "k1", "--json"))
    r = cli(deps, "agents", "create", "report", "--idempotency-key", "k1", "--json")
    assert r.exit_code == 0 and as_json(r)["id"] == first["id"] and "replayed" in r.stderr and len(api.agents) == 1


def test_signing_secrets_print_only_when_asked(deps, api):
    orig = api.add_agent

    def with_secret(name, kind="echo", **fields):
        return orig(name, kind, signingSecret="whsec_c2VjcmV0", **fields)

    api.add_agent = with_secret
    r = cli(deps, "agents", "create", "hook", "--json")
    assert r.exit_code == 0 and "signingSecret" not in as_json(r) and "whsec_" not in r.output
    r = cli(deps, "agents", "create", "hook2", "--show-secrets", "--json")
    assert as_json(r)["signingSecret"] == "whsec_c2VjcmV0"


def test_delete_by_name(deps, api):
    api.add_agent("old")
    r = cli(deps, "agents", "delete", "old")
    assert r.exit_code == 0 and not api.agents


# --- schedules -----------------------------------------------------------------------------------------------
def test_schedule_set_show_rm(deps, api):
    a = api.add_agent("report")
    r = cli(deps, "schedule", "set", "report", "30 9 * * MON-FRI", "--tz", "America/New_York", "--priority", "high")
    assert r.exit_code == 0, r.output
    sent = json.loads(api.requests[-1].content)
    assert sent == {"cronExpression": "30 9 * * MON-FRI", "timezone": "America/New_York", "priority": "HIGH"}
    assert "2026-03-03 09:30:00-05:00" in r.stdout
    assert as_json(cli(deps, "schedule", "show", a["id"], "--json"))["cronExpression"] == "30 9 * * MON-FRI"
    assert cli(deps, "schedule", "rm", "report").exit_code == 0
    assert cli(deps, "schedule", "show", "report").exit_code == 1


# --- runs ---------------------------------------------------------------------------------------------------------
def test_run_without_wait_answers_queued(deps, api):
    api.add_agent("report")
    r = cli(deps, "run", "report", "--input", '{"day": "mon"}', "--json")
    assert r.exit_code == 0 and as_json(r)["status"] == "QUEUED"
    post = [q for q in api.requests if q.method == "POST"][0]
    assert json.loads(post.content) == {"input": {"day": "mon"}} and post.headers["Idempotency-Key"]


@pytest.mark.parametrize("outcome,code", [("SUCCEEDED", 0), ("DEAD", 1), ("CANCELLED", 1)])
def test_run_wait_polls_until_the_outcome(deps, api, sleeps, outcome, code):
    a = api.add_agent("report")
    api.progress[a["id"]] = ["QUEUED", "RUNNING", outcome]
    r = cli(deps, "run", "report", "--wait", "--poll-seconds", "0.5", "--json")
    assert r.exit_code == code, r.output
    assert as_json(r)["status"] == outcome and sleeps == [0.5, 0.5]


def test_run_wait_gives_up_after_its_timeout(deps, api):
    a = api.add_agent("report")
    api.progress[a["id"]] = ["RUNNING"] * 10
    clock = iter(range(0, 100, 10))
    deps.monotonic = lambda: next(clock)
    r = cli(deps, "run", "report", "--wait", "--timeout", "25")
    assert r.exit_code == 1 and "still RUNNING after 25 s" in r.stderr


def test_run_now_while_paused_says_why_it_waits(deps, api):
    api.add_agent("report")
    api.fail_next.append(("POST", httpx.Response(202, json={"sessionId": "s1", "status": "QUEUED", "waitingReason": "SCHEDULER_PAUSED"})))
    r = cli(deps, "run", "report")
    assert r.exit_code == 0 and "paused" in r.stderr


def test_runs_list_show_cancel(deps, api):
    a = api.add_agent("report")
    sid = as_json(cli(deps, "run", "report", "--json"))["sessionId"]
    r = cli(deps, "runs", "list", "report")
    assert r.exit_code == 0 and sid in r.stdout and "QUEUED" in r.stdout
    assert as_json(cli(deps, "runs", "show", "report", sid, "--json"))["sessionId"] == sid
    r = cli(deps, "runs", "cancel", a["id"], sid, "--json")
    assert r.exit_code == 0 and as_json(r)["status"] == "CANCELLED"


# --- DLQ ------------------------------------------------------------------------------------------------------------
def test_dlq_list_and_redrive(deps, api):
    api.dlq = [{"sessionId": "s1", "agentId": "ag_1", "error": {"category": "PERMANENT", "message": "boom"},
                "attempt": 1, "failedAt": "2026-03-02T12:00:00+00:00"}]
    r = cli(deps, "dlq", "list")
    assert r.exit_code == 0 and "PERMANENT: boom" in r.stdout
    r = cli(deps, "dlq", "redrive", "--dry-run", "s1", "s9", "--json")
    assert r.exit_code == 1 and as_json(r)["notInDlq"] == ["s9"] and not api.writes()
    r = cli(deps, "dlq", "redrive", "s1", "--json")
    assert r.exit_code == 0 and as_json(r) == {"redriven": 1}
    assert json.loads(api.requests[-1].content) == {"sessionIds": ["s1"]}


# --- agents apply -------------------------------------------------------------------------------------------------------
FILE = """
agents:
  - name: report
    kind: echo
    config: {message: hi}
    description: the morning report
    schedule:
      cronExpression: "30 9 * * MON-FRI"
      timezone: America/New_York
  - name: flaky
    kind: fail
    maxRetries: 1
"""


def write(tmp_path: Path, text: str, name: str = "agents.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_apply_creates_then_changes_nothing(deps, api, tmp_path):
    path = write(tmp_path, FILE)
    r = cli(deps, "agents", "apply", "-f", path, "--json")
    assert r.exit_code == 0, r.output
    out = as_json(r)
    assert out["summary"]["created"] == 2 and out["applyset"] == "agents.yaml"
    report = next(a for a in api.agents.values() if a["name"] == "report")
    assert report["schedule"]["timezone"] == "America/New_York"
    assert report["description"] == "the morning report"
    assert report["labels"] == {"agent-scheduler/applyset": "agents.yaml"}
    assert all(q.headers.get("Idempotency-Key") for q in api.requests if q.method == "POST" and q.url.path == "/api/agents")
    before = len(api.writes())
    r = cli(deps, "agents", "apply", "-f", path)
    assert r.exit_code == 0 and "2 unchanged" in r.stdout and len(api.writes()) == before


def test_apply_dry_run_shows_old_and_new_and_changes_nothing(deps, api, tmp_path):
    cli(deps, "agents", "apply", "-f", write(tmp_path, FILE))
    changed = FILE.replace("message: hi", "message: hello").replace("maxRetries: 1", "timeoutSeconds: 60")
    before = len(api.writes())
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, changed), "--dry-run", "--json")
    assert r.exit_code == 0 and len(api.writes()) == before
    results = {x["name"]: x for x in as_json(r)["results"]}
    assert results["report"]["changes"] == [{"field": "config", "old": {"message": "hi"}, "new": {"message": "hello"}}]
    assert sorted((c["field"], c["old"], c["new"]) for c in results["flaky"]["changes"]) == [
        ("maxRetries", 1, 3), ("timeoutSeconds", 300, 60)]  # left out: back to its default
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, changed), "--dry-run")
    assert "config: {\"message\": \"hi\"} -> {\"message\": \"hello\"}" in r.stdout and "dry run" in r.stdout


def test_apply_removes_a_schedule_the_file_no_longer_has(deps, api, tmp_path):
    cli(deps, "agents", "apply", "-f", write(tmp_path, FILE))
    no_schedule = re.sub(r"    schedule:\n(      .*\n)+", "", FILE)
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, no_schedule), "--json")
    assert r.exit_code == 0 and as_json(r)["summary"] == {"created": 0, "updated": 1, "unchanged": 1, "deleted": 0, "failed": 0}
    assert ("DELETE", f"/api/agents/{next(a['id'] for a in api.agents.values() if a['name'] == 'report')}/schedule") in api.writes()


def test_apply_prune_deletes_only_agents_of_its_set(deps, api, tmp_path):
    cli(deps, "agents", "apply", "-f", write(tmp_path, FILE), "--applyset", "team")
    mine = api.add_agent("handmade")
    other_set = api.add_agent("other", description="[applyset: elsewhere]")
    only_report = FILE.split("  - name: flaky")[0]
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, only_report), "--applyset", "team", "--prune", "--json")
    assert r.exit_code == 0, r.output
    assert as_json(r)["summary"]["deleted"] == 1
    names = {a["name"] for a in api.agents.values()}
    assert names == {"report", mine["name"], other_set["name"]}


def test_apply_refuses_a_shared_name_and_carries_on(deps, api, tmp_path):
    a, b = api.add_agent("report"), api.add_agent("report")
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, FILE), "--json")
    assert r.exit_code == 1
    results = {x["name"]: x for x in as_json(r)["results"]}
    assert results["report"]["action"] == "failed" and a["id"] in results["report"]["error"] and b["id"] in results["report"]["error"]
    assert results["flaky"]["action"] == "created"


def test_apply_a_failing_agent_does_not_stop_the_others(deps, api, tmp_path):
    api.fail_next.append(("POST", httpx.Response(400, json={"code": "VALIDATION_ERROR", "message": "config.message: too long", "field": "config.message"})))
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, FILE))
    assert r.exit_code == 1 and "config.message: too long" in r.stdout and "1 created" in r.stdout


@pytest.mark.parametrize("text,needle", [
    ("agents: {}", "list 'agents'"), ("- a", "list 'agents'"), ("agents: [{kind: echo}]", "agents[0].name"),
    ("agents: [{name: a, kind: echo}, {name: a, kind: echo}]", "already agents[0]"),
    ("agents: [{name: a, kind: echo, schedule: {timezone: UTC}}]", "expression or cronExpression"),
    ("agents: [{name: a, kind: echo}]\nextra: 1", "unknown top-level field 'extra'"), ("agents: [", "not valid YAML"),
])
def test_apply_a_bad_file_is_a_usage_error(deps, api, tmp_path, text, needle):
    r = cli(deps, "agents", "apply", "-f", write(tmp_path, text))
    assert r.exit_code == 2 and needle in r.output and not api.writes()


def test_apply_reads_json_from_stdin_with_a_named_set(deps, api):
    doc = json.dumps({"agents": [{"name": "j", "kind": "echo"}]})
    assert cli(deps, "agents", "apply", "-f", "-", input=doc).exit_code == 2  # stdin needs --applyset
    r = cli(deps, "agents", "apply", "-f", "-", "--applyset", "ci", "--json", input=doc)
    assert r.exit_code == 0 and as_json(r)["summary"]["created"] == 1
