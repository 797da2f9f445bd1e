"""`tail`: the event stream over a scripted WebSocket, dropped and resumed."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosedError

from agent_scheduler.cli.main import Deps, app

TOKEN = "tok-tail-marker"
runner = CliRunner(env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})  # rich wraps error panels at the width


def event(seq, name="agent:started", agent="ag_00000000000000000001"):
    e = {"event": name, "data": {"agentId": agent, "sessionId": f"s{seq}", "attempt": 1}, "timestamp": "2026-03-02T12:00:00+00:00"}
    if seq is not None:
        e["seq"] = seq
    return e


class Script:
    """Each connection plays one list of frames; ``DROP`` ends it as a network failure would."""

    DROP = object()

    def __init__(self, *connections):
        self.connections = list(connections)
        self.urls: list[str] = []
        self.sent: list[list[dict]] = []

    def connect(self, url):
        self.urls.append(url)
        frames = self.connections.pop(0)
        if isinstance(frames, Exception):
            raise frames
        sent: list[dict] = []
        self.sent.append(sent)
        script = self

        class Conn:
            def send(self, message):
                sent.append(json.loads(message))

            def recv(self, timeout=None):
                if not frames or frames[0] is script.DROP:
                    raise ConnectionClosedError(None, None)
                f = frames.pop(0)
                return f if isinstance(f, str) else json.dumps(f)

            def close(self):
                pass

        return Conn()


def api(ticket: bool):
    def handle(request):
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if request.url.path == "/api/events/ticket":
            return httpx.Response(200, json={"ticket": "t-1"}) if ticket else httpx.Response(404, json={"code": "NOT_FOUND", "message": "x"})
        if request.url.path == "/api/agents":
            return httpx.Response(200, json={"items": [{"id": "ag_00000000000000000001", "name": "report"}], "nextToken": None})
        if request.url.path == "/api/agents/ag_00000000000000000001":
            return httpx.Response(200, json={"id": "ag_00000000000000000001", "name": "report"})
        return httpx.Response(404, json={"code": "NOT_FOUND", "message": "no"})

    return httpx.MockTransport(handle)


def tail(script, *args, ticket=True, ws_url="ws://ws.test:8001"):
    sleeps = []
    deps = Deps(transport=api(ticket), sleep=sleeps.append, ws_connect=script.connect, env={}, cwd=None)
    head = ["--url", "http://api.test/api", "--token", TOKEN] + (["--ws-url", ws_url] if ws_url else [])
    result = runner.invoke(app, [*head, "tail", *args], obj=deps)
    assert TOKEN not in result.output
    return result, sleeps


def test_a_drop_resumes_after_the_last_seq_and_skips_replayed_duplicates():
    s = Script([{"event": "subscribed", "data": {}}, event(5), event(6), Script.DROP],
               [{"event": "subscribed", "data": {}}, event(6), event(7)])
    r, sleeps = tail(s, "--agent", "report", "--since", "4", "--count", "3", "--json")
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [5, 6, 7]
    assert s.sent[0][0] == {"action": "subscribe", "agentIds": ["ag_00000000000000000001"], "since": 4}
    assert s.sent[1][0]["since"] == 6 and sleeps == [0.5]
    assert all(parse_qs(urlsplit(u).query) == {"ticket": ["t-1"]} for u in s.urls)
    assert "resuming after seq 6" in r.stderr


def test_without_tickets_the_token_goes_in_the_url_and_without_seq_the_gap_is_named():
    s = Script([event(None), Script.DROP], OSError("refused"), [event(None)])
    r, sleeps = tail(s, "--count", "2", ticket=False)
    assert r.exit_code == 0, r.output
    assert parse_qs(urlsplit(s.urls[0]).query) == {"token": [TOKEN]} and urlsplit(s.urls[0]).path == "/"
    assert s.sent[0][0] == {"action": "subscribe", "agentIds": ["*"]}
    assert "not replayed" in r.stderr and sleeps == [0.5, 1.0]
    assert r.stdout.count("agent:started") == 2 and "report" in r.stdout


def test_a_refused_handshake_stops_with_exit_1():
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response

    s = Script(InvalidStatus(Response(401, "Unauthorized", [])))
    r, _ = tail(s)
    assert r.exit_code == 1 and "HTTP 401" in r.stderr


def test_it_gives_up_after_repeated_failures():
    s = Script(*[OSError("refused")] * 11)
    r, sleeps = tail(s)
    assert r.exit_code == 1 and "gave up" in r.stderr and len(sleeps) == 10 and max(sleeps) == 30.0


def test_tail_needs_the_websocket_url():
    r, _ = tail(Script(), ws_url=None)
    assert r.exit_code == 2 and "WebSocket URL" in r.output
