"""Flow control and brakes through the local system (`make run`), on its real clock.

Per-agent ``maxConcurrency``, pools (concurrency, throttle, the shared back-off after a 429),
provider rate limits with usage, budgets, auto-pause, ``pausedUntil``, ``CANCEL_PREVIOUS`` and
bulk cancel. Runs are short ``sleep``/``echo`` runs and a local HTTP server; every wait polls for
a state with a deadline. Times are compared with what the system reports (``startedAt``,
``finishedAt``, ``blockedUntil``), never with the test's own clock.

The shared system caps back-off (and so a provider's ``Retry-After``) at one second: the pool's
shared back-off is observed within that second, by reading the pool as soon as the local agent
server has answered 429.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.conftest import token
from tests.e2e.test_local_system import create_agent, ts

pytestmark = pytest.mark.e2e

FINAL = ("SUCCEEDED", "FAILED", "DEAD", "CANCELLED", "SKIPPED", "TIMEOUT")
LEAD_SECONDS = 6  # an at() fire this far after the save


class ScriptedServer:
    """A local HTTP agent: each path answers its scripted responses in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[tuple[int, dict, dict]]] = {}
        self.hits: dict[str, int] = {}
        self.served = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with outer.served:
                    n = outer.hits.get(self.path, 0)
                    outer.hits[self.path] = n + 1
                    script = outer.scripts.get(self.path) or [(404, {}, {})]
                    status, headers, body = script[min(n, len(script) - 1)]
                    outer.served.notify_all()
                raw = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def wait_hits(self, path: str, n: int, timeout: float = 15.0) -> None:
        with self.served:
            assert self.served.wait_for(lambda: self.hits.get(path, 0) >= n, timeout), (path, self.hits)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def agent_server():
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(read, accept, timeout: float = 20.0, every: float = 0.1, what: str = "a state"):
    """Read until ``accept(value)``; the last value read is in the failure message."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = read()
        if accept(value):
            return value
        time.sleep(every)
    raise AssertionError(f"no {what} within {timeout:g} s; last read: {value}")


def session(api, agent_id: str, session_id: str) -> dict:
    r = api.get(f"/api/agents/{agent_id}/sessions/{session_id}")
    assert r.status_code == 200, r.text
    return r.json()


def sessions(api, agent_id: str) -> list[dict]:
    r = api.get(f"/api/agents/{agent_id}/sessions", params={"limit": 50})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def run_now(api, agent_id: str) -> dict:
    r = api.post(f"/api/agents/{agent_id}/run", json={})
    assert r.status_code in (200, 201, 202), r.text
    return r.json()


def wait_final(api, agent_id: str, session_id: str, timeout: float = 30.0) -> dict:
    return poll(lambda: session(api, agent_id, session_id), lambda s: s["status"] in FINAL, timeout,
                what=f"final state of {session_id}")


def put_pool(api, name: str, **body) -> dict:
    r = api.put(f"/api/pools/{name}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def assert_never_overlap(runs: list[dict]) -> None:
    """Each run started only after the one before it had finished (times from the system)."""
    spans = sorted((ts(s["startedAt"]), ts(s["finishedAt"]), s["sessionId"]) for s in runs)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        assert start >= end, f"{b} started at {start} before {a} finished at {end}"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --- per-agent and pool limits ----------------------------------------------------------------
def test_max_concurrency_one_runs_three_run_nows_one_at_a_time(system):
    api = system.http(system.token)
    agent = create_agent(api, name="one at a time", kind="sleep", config={"seconds": 1}, maxConcurrency=1)
    ids = [run_now(api, agent["id"])["sessionId"] for _ in range(3)]

    # While the first runs, the others wait and say it is the agent's own limit that holds them.
    def waiting(ss):
        by_id = {s["sessionId"]: s for s in ss}
        running = [s for s in ss if s["status"] == "RUNNING"]
        assert len(running) <= 1, running
        held = [by_id[i] for i in ids if by_id[i]["status"] == "QUEUED"]
        return len(running) == 1 and len(held) == 2 and all(s["waitingReason"] == "AGENT_CONCURRENCY" for s in held)

    poll(lambda: sessions(api, agent["id"]), waiting, timeout=10, every=0.05, what="1 running, 2 AGENT_CONCURRENCY")
    done = [wait_final(api, agent["id"], i) for i in ids]
    assert [s["status"] for s in done] == ["SUCCEEDED"] * 3
    assert_never_overlap(done)


def test_two_agents_in_a_pool_of_one_never_overlap_and_the_waiting_one_says_why(system):
    api = system.http(system.token)
    pool = unique("gpu")
    put_pool(api, pool, maxConcurrency=1)
    a = create_agent(api, name="pool a", kind="sleep", config={"seconds": 1.5}, pools=[pool])
    b = create_agent(api, name="pool b", kind="sleep", config={"seconds": 1.5}, pools=[pool])
    first = run_now(api, a["id"])["sessionId"]
    poll(lambda: session(api, a["id"], first), lambda s: s["status"] == "RUNNING", what="a running")
    second = run_now(api, b["id"])
    held = poll(lambda: session(api, b["id"], second["sessionId"]),
                lambda s: s["status"] != "QUEUED" or s["waitingReason"] == "POOL_LIMIT", what="b held by the pool")
    assert (held["status"], held["waitingReason"], held["waitingFor"]) == ("QUEUED", "POOL_LIMIT", pool), held
    assert put_pool(api, pool, maxConcurrency=1)["running"] == 1
    done = [wait_final(api, a["id"], first), wait_final(api, b["id"], second["sessionId"])]
    assert [s["status"] for s in done] == ["SUCCEEDED"] * 2
    assert_never_overlap(done)
    assert api.get(f"/api/pools/{pool}").json()["running"] == 0


def test_a_pool_throttle_spaces_starts_across_agents(system):
    api = system.http(system.token)
    pool = unique("api")
    period = 3
    put_pool(api, pool, throttle={"limit": 1, "periodSeconds": period})
    agents = [create_agent(api, name=f"throttled {k}", kind="echo", config={"message": "hi"}, pools=[pool])
              for k in range(3)]
    runs = [(g["id"], run_now(api, g["id"])["sessionId"]) for g in agents]
    done = [wait_final(api, agent_id, sid, timeout=20) for agent_id, sid in runs]
    assert [s["status"] for s in done] == ["SUCCEEDED"] * 3
    starts = sorted(ts(s["startedAt"]) for s in done)
    # One start per period window of the pool (not per agent): the three runs start in three
    # windows, so the last more than a period after the first (unthrottled, three echo runs start
    # within a fraction of a second). A window counts the second a run is admitted to start;
    # ``startedAt`` is when its worker claimed it, up to a few tenths later: hence the margin.
    assert starts[-1] - starts[0] >= period - 0.5, starts
    assert len({int(t // period) for t in starts}) >= 2, starts


# --- provider rate limits and usage -----------------------------------------------------------
USAGE = {"inputTokens": 120, "outputTokens": 30, "costUsd": 0.25}


def test_a_429_then_200_waits_without_using_a_retry_and_records_usage(system, agent_server):
    api = system.http(system.token)
    path = "/" + unique("limited")
    agent_server.scripts[path] = [(429, {"Retry-After": "1"}, {"error": "slow down"}),
                                  (200, {}, {"output": "done", "usage": USAGE})]
    agent = create_agent(api, name="provider", kind="http", config={"url": agent_server.url(path), "method": "POST"},
                         maxRetries=0, budget={"maxCostUsdPerDay": 100})
    sid = run_now(api, agent["id"])["sessionId"]
    s = wait_final(api, agent["id"], sid)
    assert s["status"] == "SUCCEEDED", s
    assert s["rateLimitedWaits"] == 1 and s["output"]["body"]["output"] == "done", s
    assert s["maxAttempts"] == 1, s  # maxRetries 0: the wait did not need (or use) a retry
    assert s["usage"] == USAGE
    assert agent_server.hits[path] == 2
    usage = api.get(f"/api/agents/{agent['id']}").json()["budgetUsage"]
    assert usage["runs"] == 1 and usage["costUsd"] == pytest.approx(0.25), usage


def test_one_429_blocks_a_second_agent_of_the_pool_until_retry_after(system, agent_server):
    api = system.http(system.token)
    pool = unique("key")
    put_pool(api, pool, maxConcurrency=5)
    path = "/" + unique("shared-key")
    agent_server.scripts[path] = [(429, {"Retry-After": "1"}, {}), (200, {}, {"output": "ok"})]
    a = create_agent(api, name="told 429", kind="http", config={"url": agent_server.url(path)}, pools=[pool])
    b = create_agent(api, name="same key", kind="echo", config={"message": "b"}, pools=[pool])
    first = run_now(api, a["id"])["sessionId"]
    agent_server.wait_hits(path, 1)
    blocked = poll(lambda: api.get(f"/api/pools/{pool}").json(), lambda p: p["blockedUntil"] is not None,
                   timeout=5, every=0.02, what="the pool blocked")["blockedUntil"]
    second = run_now(api, b["id"])["sessionId"]
    held = session(api, b["id"], second)
    if held["status"] == "QUEUED":
        assert held["waitingFor"] == pool and held["waitingReason"] in ("RATE_LIMITED", "POOL_LIMIT"), held
    done_b = wait_final(api, b["id"], second)
    done_a = wait_final(api, a["id"], first)
    assert done_a["status"] == done_b["status"] == "SUCCEEDED", (done_a, done_b)
    assert ts(done_b["startedAt"]) >= ts(blocked), (done_b["startedAt"], blocked)
    assert done_a["rateLimitedWaits"] == 1


# --- budgets and brakes -----------------------------------------------------------------------
def test_a_budget_of_one_run_a_day_answers_429_to_the_second_run_now(system):
    api = system.http(system.token)
    agent = create_agent(api, name="budgeted", kind="echo", config={"message": "once"}, budget={"maxRunsPerDay": 1})
    sid = run_now(api, agent["id"])["sessionId"]
    assert wait_final(api, agent["id"], sid)["status"] == "SUCCEEDED"
    poll(lambda: api.get(f"/api/agents/{agent['id']}").json()["budgetUsage"], lambda u: u and u["runs"] == 1,
         timeout=5, what="the run counted")
    r = api.post(f"/api/agents/{agent['id']}/run", json={})
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "BUDGET_EXHAUSTED", r.json()
    assert [s["sessionId"] for s in sessions(api, agent["id"])] == [sid]


def test_pause_after_failures_disables_the_schedule_by_system(system):
    api = system.http(system.token)
    agent = create_agent(api, name="broken prompt", kind="fail", config={"message": "bad"}, maxRetries=0,
                         pauseAfterFailures=1)
    r = api.post(f"/api/agents/{agent['id']}/schedule", json={"expression": "0 3 * * *", "timezone": "UTC"})
    assert r.status_code == 200, r.text
    sid = run_now(api, agent["id"])["sessionId"]
    assert wait_final(api, agent["id"], sid)["status"] == "DEAD"
    schedule = poll(lambda: api.get(f"/api/agents/{agent['id']}/schedule").json(), lambda s: not s["enabled"],
                    timeout=10, what="the schedule disabled")
    assert schedule["disabledReason"] == "CONSECUTIVE_FAILURES", schedule
    history = api.get(f"/api/agents/{agent['id']}/schedule/history").json()["items"]
    assert any(h["changedBy"] == "system" and h["action"] == "DISABLED" for h in history), history
    # Enabling it again clears the reason.
    r = api.post(f"/api/agents/{agent['id']}/schedule", json={"expression": "0 3 * * *", "timezone": "UTC",
                                                              "enabled": True})
    assert r.status_code == 200 and r.json()["enabled"] and r.json()["disabledReason"] is None, r.text


def test_paused_until_moves_next_run_at_and_removing_it_moves_it_back(system):
    api = system.http(system.token)
    agent = create_agent(api, name="paused", kind="echo", config={"message": "p"})
    # a yearly schedule: nothing fires (or is admitted ahead) while the module runs
    body = {"expression": "0 0 1 1 *", "timezone": "UTC"}
    plain = api.post(f"/api/agents/{agent['id']}/schedule", json=body).json()
    first = datetime.fromtimestamp(ts(plain["nextRunAt"]), tz=timezone.utc)
    until = first + timedelta(hours=1)  # past the next fire: the one a year later is next
    r = api.post(f"/api/agents/{agent['id']}/schedule", json={**body, "pausedUntil": iso(until)})
    assert r.status_code == 200, r.text
    paused = r.json()
    assert ts(paused["nextRunAt"]) == first.replace(year=first.year + 1).timestamp(), paused
    assert all(ts(t) >= until.timestamp() for t in paused["nextRuns"]), paused
    back = api.post(f"/api/agents/{agent['id']}/schedule", json={**body, "pausedUntil": None}).json()
    assert ts(back["nextRunAt"]) == first.timestamp(), (back, plain)
    assert api.delete(f"/api/agents/{agent['id']}/schedule").status_code in (200, 204)


def test_cancel_previous_cancels_the_earlier_run_when_the_schedule_fires(system):
    api = system.http(system.token)
    agent = create_agent(api, name="stale", kind="sleep", config={"seconds": 30})
    earlier = run_now(api, agent["id"])["sessionId"]
    poll(lambda: session(api, agent["id"], earlier), lambda s: s["status"] == "RUNNING", what="the earlier run")
    now = datetime.fromtimestamp(ts(session(api, agent["id"], earlier)["startedAt"]), tz=timezone.utc)
    fire = (now + timedelta(seconds=LEAD_SECONDS + 1)).replace(microsecond=0)
    r = api.post(f"/api/agents/{agent['id']}/schedule",
                 json={"expression": f"at({fire.replace(tzinfo=None).isoformat()})", "timezone": "UTC",
                       "overlapPolicy": "CANCEL_PREVIOUS"})
    assert r.status_code == 200, r.text

    def fired(ss):
        return [s for s in ss if s["trigger"] == "SCHEDULE" and s["status"] == "RUNNING"]

    fire_run = poll(lambda: sessions(api, agent["id"]), fired, timeout=LEAD_SECONDS + 15, what="the fire running")
    old = wait_final(api, agent["id"], earlier, timeout=10)
    assert old["status"] == "CANCELLED", old
    new = fired(fire_run)[0]
    assert ts(new["scheduledFor"]) == fire.timestamp()
    r = api.post("/api/sessions/cancel", json={"agentIds": [agent["id"]]})  # leave no 30 s run behind
    assert r.status_code == 202 and r.json()["cancelled"] == 1, r.text
    poll(lambda: sessions(api, agent["id"]), lambda ss: all(s["status"] in FINAL for s in ss), timeout=10,
         what="every run of the agent ended")


def test_bulk_cancel_touches_only_the_callers_runs(system):
    mine, theirs = system.http(system.token), system.http(token(unique("e2e-flow-other")))
    own = create_agent(mine, name="mine", kind="sleep", config={"seconds": 30}, maxConcurrency=1)
    other = create_agent(theirs, name="theirs", kind="sleep", config={"seconds": 30}, maxConcurrency=1)
    own_ids = [run_now(mine, own["id"])["sessionId"] for _ in range(2)]
    other_ids = [run_now(theirs, other["id"])["sessionId"] for _ in range(2)]
    for api, agent_id, sid in ((mine, own["id"], own_ids[0]), (theirs, other["id"], other_ids[0])):
        poll(lambda a=api, g=agent_id, i=sid: session(a, g, i), lambda s: s["status"] == "RUNNING", what=f"{sid} running")

    r = mine.post("/api/sessions/cancel", json={"agentIds": [other["id"]]})
    assert r.status_code == 400 and r.json()["field"] == "agentIds", r.text
    before = iso(datetime.fromtimestamp(ts(session(mine, own["id"], own_ids[0])["scheduledFor"]) + 3600, tz=timezone.utc))
    r = mine.post("/api/sessions/cancel", json={"scheduledBefore": before})
    assert r.status_code == 202 and r.json()["cancelled"] == 2, r.text
    assert [wait_final(mine, own["id"], i, timeout=10)["status"] for i in own_ids] == ["CANCELLED"] * 2
    still = [session(theirs, other["id"], i)["status"] for i in other_ids]
    assert still == ["RUNNING", "QUEUED"], still

    r = theirs.post("/api/sessions/cancel", json={"agentIds": [other["id"]]})
    assert r.status_code == 202 and r.json()["cancelled"] == 2, r.text
    assert [wait_final(theirs, other["id"], i, timeout=10)["status"] for i in other_ids] == ["CANCELLED"] * 2
