"""Event stream rules without AWS: who gets an event live, settings, the pusher's slow lane,
the dashboard page's self-containment and its Content-Security-Policy."""
from __future__ import annotations

import base64
import hashlib
import re
import threading
from unittest.mock import Mock

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.connections_api import ConnectionPusher
from chalicelib.adapters.events_store import HOLD_SECONDS, Head, hold
from chalicelib.dashboard import PAGE, render
from chalicelib.errors import ConfigError
from chalicelib.services.ws import websocket_url
from chalicelib.settings import Settings, cors_origin


def test_receivers_follow_subscriptions_and_replay_floors():
    head = Head(
        last_seq=10,
        subs={"all": ["*"], "one": ["a1"], "none": [], "held": ["*"], "resumed": ["*"]},
        live_from={"held": hold(1000), "resumed": 9},
    )
    now = 1010
    assert head.receivers(9, "a1", now) == ["all", "one"]  # "resumed" got 9 by replay
    assert head.receivers(9, "a2", now) == ["all"]
    assert head.receivers(10, "a1", now) == ["all", "one", "resumed"]
    assert head.receivers(10, None, now) == ["all", "one", "none", "resumed"]  # no agent: everyone not replaying
    # a hold abandoned by a dead replay handler ends by itself
    assert "held" in head.receivers(10, "a1", 1000 + HOLD_SECONDS)


def test_event_settings_are_parsed_once_and_bad_values_name_the_variable():
    s = Settings.from_env({})
    assert s.event_retention_hours == 24 and s.cors_origin == "" and s.events_table == "agent-scheduler-events"
    assert Settings.from_env({"SCHEDULER_EVENT_RETENTION_HOURS": "48"}).event_retention_hours == 48
    for bad in ("0", "x", "-1"):
        with pytest.raises(ConfigError, match="SCHEDULER_EVENT_RETENTION_HOURS"):
            Settings.from_env({"SCHEDULER_EVENT_RETENTION_HOURS": bad})
    assert cors_origin({"SCHEDULER_CORS_ORIGIN": "https://dash.example.com"}) == "https://dash.example.com"
    assert cors_origin({"SCHEDULER_CORS_ORIGIN": "http://127.0.0.1:5173"}) == "http://127.0.0.1:5173"
    for bad in ("*", "https://a.example/path", "dash.example.com", "https://a.example, https://b.example"):
        with pytest.raises(ConfigError, match="SCHEDULER_CORS_ORIGIN"):
            cors_origin({"SCHEDULER_CORS_ORIGIN": bad})


def test_websocket_url_from_the_management_endpoint():
    assert websocket_url("http://127.0.0.1:8001") == "ws://127.0.0.1:8001/"
    assert websocket_url("https://abc.execute-api.us-east-1.amazonaws.com/api") == \
        "wss://abc.execute-api.us-east-1.amazonaws.com/api"
    assert websocket_url("") == ""


def _client(behaviour):
    client = Mock(spec=["post_to_connection"])
    client.post_to_connection.side_effect = lambda ConnectionId, Data: behaviour(ConnectionId)
    return client


def test_a_stuck_connection_never_holds_up_the_others():
    """A connection that failed once goes to the slow lane: later, while its post hangs,
    every other connection is served by the (one-thread) main pool at once."""
    release = threading.Event()
    delivered: list[str] = []
    state = {"stuck": False}

    def post(cid):
        if cid == "slow":
            if not state["stuck"]:
                raise ClientError({"Error": {"Code": "InternalServerError"}}, "PostToConnection")
            release.wait(30)
        delivered.append(cid)

    pusher = ConnectionPusher(_client(post), workers=1, deadline_seconds=30)
    try:
        assert pusher.push(["slow", "f0"], {"event": "x"}) == []
        assert pusher.is_slow("slow") and not pusher.is_slow("f0")
        state["stuck"] = True
        delivered.clear()
        fast = [f"f{i}" for i in range(10)]
        assert pusher.push(["slow"] + fast, {"event": "y"}) == []
        assert delivered == fast  # all served, in order, while "slow" still hangs
    finally:
        release.set()
        pusher.shutdown()


def test_gone_connections_are_reported_even_from_the_slow_lane():
    gone_error = ClientError({"Error": {"Code": "GoneException"}, "ResponseMetadata": {"HTTPStatusCode": 410}},
                             "PostToConnection")
    calls = {"n": 0}
    done = threading.Event()

    def post(cid):
        calls["n"] += 1
        if cid == "flaky" and calls["n"] == 1:
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "PostToConnection")
        if cid == "flaky":
            done.set()
            raise gone_error

    pusher = ConnectionPusher(_client(post), workers=1, deadline_seconds=5)
    try:
        pusher.push(["flaky"], {})
        assert pusher.push(["flaky"], {}) == []  # sent from the slow lane, not waited for
        assert done.wait(5)
        pusher.slow_pool.shutdown(wait=True)
        assert pusher.push([], {}) == ["flaky"]  # reported with the next push
    finally:
        pusher.shutdown()


def test_the_dashboard_is_one_self_contained_page_with_a_strict_policy():
    html, headers = render("ws://127.0.0.1:8001/")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    # nothing loaded from anywhere: no src/href to another document, no @import, no url()
    assert not re.search(r"""\b(src|href)\s*=\s*["'](?!#|data:)""", html)
    assert "@import" not in html and "url(" not in html
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "connect-src 'self' ws://127.0.0.1:8001;" in csp
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        [body] = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp
    assert "sessionStorage" in PAGE.read_text() and "localStorage.setItem" not in PAGE.read_text()
    assert render("")[1]["Content-Security-Policy"].count("connect-src 'self';") == 1


def test_cors_is_one_origin_when_set_and_nothing_otherwise():
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import json, app; r = app.app.routes['/api/agents']['GET']; c = r.cors; "
        "print(json.dumps(None if not c else {'origin': c.allow_origin, 'headers': c.allow_headers}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SCHEDULER_CORS_ORIGIN"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(extra):
        out = subprocess.run([sys.executable, "-c", probe], cwd=root, env={**env, **extra}, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run({}) is None
    got = run({"SCHEDULER_CORS_ORIGIN": "https://dash.example.com"})
    assert got["origin"] == "https://dash.example.com" and "Authorization" in got["headers"]
