"""A user's first hour end to end: the CLI as a subprocess against `make run`, then a restart.

The command (``python -m agent_scheduler``, what ``.venv/bin/agent-scheduler`` runs) applies a
file of agents twice, runs them with ``--wait``, lists runs as JSON and repeats a run-now with
the same idempotency key; then the system is stopped with Ctrl-C (SIGINT) while one run is
running and one waits (paused), started again on the same state directory, and everything is
there: agents, the schedule, sessions, the DLQ entry, the pause, the idempotency key, and the
two unfinished runs finish exactly once. A ``kill -9`` loses at most the last snapshot's 5 s.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, LocalSystem, start_system, stop_system
from tests.e2e.polling import until

pytestmark = pytest.mark.e2e

AGENTS_YAML = """\
agents:
  - name: report
    kind: echo
    config: {message: good morning}
    labels: {team: reporting}
    schedule:
      expression: "30 9 * * MON-FRI"
      timezone: America/New_York
  - name: slow
    kind: sleep
    config: {seconds: 3}
  - name: broken
    kind: fail
    maxRetries: 0
    config: {category: PERMANENT}
"""


def cli(system: LocalSystem, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent_scheduler", "--url", f"{system.api_url}/api", "--token", system.token, *args]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def cli_json(system: LocalSystem, *args: str, code: int = 0):
    r = cli(system, *args, "--json")
    assert r.returncode == code, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def sessions(api: httpx.Client, agent_id: str) -> list[dict]:
    r = api.get(f"/api/agents/{agent_id}/sessions?limit=100")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_the_cli_and_a_restart_keep_everything(tmp_path: Path):
    state = tmp_path / "state"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text(AGENTS_YAML)

    first = start_system(tmp_path / "one", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        applied = cli_json(first, "agents", "apply", "-f", str(agents_file))
        assert applied["summary"]["created"] == 3
        assert cli_json(first, "agents", "apply", "-f", str(agents_file))["summary"]["unchanged"] == 3
        assert cli(first, "run").returncode == 2  # a usage error: no agent named
        ids = {a["name"]: a["id"] for a in cli_json(first, "agents", "list")["items"]}
        api = first.http(first.token)
        labelled = api.get("/api/agents", params={"label": "agent-scheduler/applyset=agents.yaml"}).json()["items"]
        assert sorted(a["name"] for a in labelled) == ["broken", "report", "slow"]

        ok = cli_json(first, "run", "report", "--input", '{"day": "monday"}', "--wait", "--timeout", "30")
        assert ok["status"] == "SUCCEEDED"
        dead = cli_json(first, "run", "broken", "--wait", "--timeout", "30", code=1)
        assert dead["status"] == "DEAD"
        listed = cli_json(first, "runs", "list", "report")
        assert [s["sessionId"] for s in listed["items"]] == [ok["sessionId"]]

        # A retried run-now with the same key starts one run.
        once = cli_json(first, "run", "report", "--idempotency-key", "report-once")
        again = cli_json(first, "run", "report", "--idempotency-key", "report-once")
        assert again["sessionId"] == once["sessionId"]
        assert sorted(s["sessionId"] for s in sessions(api, ids["report"])) == sorted([ok["sessionId"], once["sessionId"]])
        slow = api.post(f"/api/agents/{ids['slow']}/run", json={}).json()
        until("running", lambda: [s for s in sessions(api, ids["slow"]) if s["status"] == "RUNNING"],
              show=lambda: sessions(api, ids["slow"]))
        admin = first.http(first.admin_token)
        assert admin.post("/api/scheduler/pause").status_code == 200
        waiting = api.post(f"/api/agents/{ids['report']}/run", json={}, headers={"Idempotency-Key": "report-2"})
        assert waiting.status_code == 202
        schedule_before = api.get(f"/api/agents/{ids['report']}/schedule").json()
    finally:
        assert stop_system(first, signal.SIGINT) == 0, first.log()[-3000:]
    assert "state saved" in first.log()

    second = start_system(tmp_path / "two", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        api = second.http(second.token)
        assert {a["name"]: a["id"] for a in cli_json(second, "agents", "list")["items"]} == ids
        assert api.get(f"/api/agents/{ids['report']}").json()["labels"]["team"] == "reporting"
        schedule_after = api.get(f"/api/agents/{ids['report']}/schedule").json()
        assert schedule_after["nextRunAt"] == schedule_before["nextRunAt"]
        assert cli_json(second, "status")["paused"] is True
        assert [d["sessionId"] for d in cli_json(second, "dlq", "list")["items"]] == [dead["sessionId"]]
        replay = api.post(f"/api/agents/{ids['report']}/run", json={}, headers={"Idempotency-Key": "report-2"})
        assert replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json()["sessionId"] == waiting.json()["sessionId"]

        admin = second.http(second.admin_token)
        assert admin.post("/api/scheduler/resume").status_code == 200

        def finished(agent: str, session_id: str):
            got = [s for s in sessions(api, ids[agent]) if s["sessionId"] == session_id]
            return got if got and got[0]["status"] == "SUCCEEDED" else None

        until("the waiting run finished", lambda: finished("report", waiting.json()["sessionId"]))
        until("the interrupted run finished", lambda: finished("slow", slow["sessionId"]), timeout=45)
        # exactly once: no second session of either (the interrupted one ran its attempt again)
        assert [s["sessionId"] for s in sessions(api, ids["slow"])] == [slow["sessionId"]]
        assert sorted(s["sessionId"] for s in cli_json(second, "runs", "list", "report")["items"]) == sorted(
            [ok["sessionId"], once["sessionId"], waiting.json()["sessionId"]])
    finally:
        stop_system(second)


def test_kill_9_loses_at_most_the_last_snapshot(tmp_path: Path):
    state = tmp_path / "state"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = start_system(tmp_path / "one", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        created = first.http(first.token).post("/api/agents", json={"name": "kept", "kind": "echo"}).json()
        until("in a snapshot", lambda: (state / "state.json").exists()
              and created["id"] in (state / "state.json").read_text(), timeout=15, every=0.2)
    finally:
        stop_system(first, signal.SIGKILL)
    second = start_system(tmp_path / "two", SCHEDULER_LOCAL_STATE_DIR=str(state))
    try:
        got = second.http(second.token).get(f"/api/agents/{created['id']}")
        assert got.status_code == 200 and got.json()["name"] == "kept"
    finally:
        stop_system(second)
