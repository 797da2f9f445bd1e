"""The agent author's kit and the examples, against small local HTTP servers."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent_scheduler.agent import (
    CallbackError,
    EnvelopeError,
    Run,
    RunFinished,
    SignatureError,
    parse,
    verify,
)
from chalicelib.agents.envelope import encode
from chalicelib.agents.signing import new_secret, signature_headers
from examples.lambda_agent import handler as lambda_handler
from examples.webhook_agent import make_server

ENVELOPE = {
    "type": "agent.run", "sessionId": "ses_1", "attempt": 2, "retriesLeft": 1, "trigger": "SCHEDULE",
    "priority": "HIGH", "scheduledFor": "2026-03-02T12:00:00+00:00", "timeoutSeconds": 3600,
    "deadline": "2026-03-02T13:00:00+00:00", "redrivenFrom": None, "lastHeartbeatDetails": {"page": 3},
    "agent": {"id": "agt_1", "name": "researcher"}, "input": {"text": "three little words"},
    "callback": None,
}


class Callbacks(BaseHTTPRequestHandler):
    """Records callback requests; answers ``server.answers`` in turn, then 200 RUNNING."""

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.path, dict(self.headers.items()), json.loads(raw or b"null")))
        if len(self.server.requests) >= 2:
            self.server.two.set()
        status, body = self.server.answers.pop(0) if self.server.answers else (200, {"status": "RUNNING",
                                                                                      "cancelRequested": False})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def callbacks():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Callbacks)
    server.requests, server.answers, server.two = [], [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/api/callbacks/ses_1/2"
    yield server
    server.shutdown()
    server.server_close()


def with_callback(url):
    return {**ENVELOPE, "callback": {"url": url, "token": "tok-secret-123", "heartbeatSeconds": 60}}


def signed(envelope, secrets, msg_id="ses_1"):
    body = encode(envelope)
    return body, signature_headers(msg_id, body, secrets, datetime.now(timezone.utc))


# --- parse and verify ----------------------------------------------------------------------------
def test_parse_gives_a_typed_envelope():
    run = parse(json.dumps(ENVELOPE))
    assert (run.session_id, run.attempt, run.retries_left, run.trigger) == ("ses_1", 2, 1, "SCHEDULE")
    assert run.deadline == datetime(2026, 3, 2, 13, tzinfo=timezone.utc)
    assert run.scheduled_for == datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    assert run.agent.name == "researcher" and run.input == {"text": "three little words"}
    assert run.last_heartbeat_details == {"page": 3} and run.callback is None
    assert run.seconds_left(datetime(2026, 3, 2, 12, 59, tzinfo=timezone.utc)) == 60.0
    cb = parse(with_callback("http://x/api/callbacks/ses_1/2")).callback
    assert cb.token == "tok-secret-123" and cb.heartbeat_seconds == 60 and "tok-secret" not in repr(cb)


@pytest.mark.parametrize("bad", [b"nope", {"type": "agent.cancel"}, {**ENVELOPE, "attempt": 0},
                                 {**ENVELOPE, "sessionId": ""}, {**ENVELOPE, "deadline": "soon"}])
def test_parse_refuses_what_is_not_an_envelope(bad):
    with pytest.raises(EnvelopeError):
        parse(bad)


def test_verify_accepts_either_secret_and_refuses_others():
    old, new, stranger = new_secret(), new_secret(), new_secret()
    body, headers = signed(ENVELOPE, [new, old])
    assert verify(body, headers, old) == ENVELOPE
    assert verify(body, {k.upper(): v for k, v in headers.items()}, [stranger, new]) == ENVELOPE
    with pytest.raises(SignatureError):
        verify(body, headers, stranger)
    with pytest.raises(SignatureError):
        verify(body.replace(b"three", b"four!"), headers, new)  # a changed body
    with pytest.raises(SignatureError):
        verify(body, {}, new)


# --- callbacks -----------------------------------------------------------------------------------
def test_run_posts_each_action_with_the_bearer_token(callbacks):
    callbacks.answers = [(200, {"status": "RUNNING", "cancelRequested": False}),
                         (200, {"status": "RUNNING", "cancelRequested": True})]
    with Run(parse(with_callback(callbacks.url))) as run:
        run.progress(40, "reading")
        assert run.cancel_requested is False
        run.heartbeat({"page": 7})
        assert run.cancel_requested is True and run.status == "RUNNING"
        run.complete({"summary": "ok"}, usage={"inputTokens": 5})
        run.fail("provider down", "RATE_LIMITED", retry_after_seconds=30, non_retryable=False)
    paths = [p for p, _, _ in callbacks.requests]
    assert paths == [f"/api/callbacks/ses_1/2/{a}" for a in ("progress", "heartbeat", "complete", "fail")]
    assert all(h["Authorization"] == "Bearer tok-secret-123" for _, h, _ in callbacks.requests)
    assert all("tok-secret" not in p for p in paths)  # never in the URL
    assert [b for _, _, b in callbacks.requests] == [
        {"progress": 40, "message": "reading"},
        {"details": {"page": 7}},
        {"output": {"summary": "ok"}, "usage": {"inputTokens": 5}},
        {"message": "provider down", "category": "RATE_LIMITED", "nonRetryable": False, "retryAfterSeconds": 30},
    ]


def test_a_finished_run_and_other_refusals_raise(callbacks):
    callbacks.answers = [(409, {"code": "RUN_FINISHED", "message": "ended", "status": "CANCELLED",
                                "endedBy": "CANCELLED"}),
                         (404, {"code": "NOT_FOUND", "message": "no such attempt"})]
    run = Run(parse(with_callback(callbacks.url)), client=httpx.Client())
    with pytest.raises(RunFinished) as info:
        run.complete("late")
    assert info.value.ended_by == "CANCELLED" and info.value.status == 409
    with pytest.raises(CallbackError) as info:
        run.heartbeat()
    assert info.value.code == "NOT_FOUND"
    with pytest.raises(ValueError):
        run.fail("x", "WHATEVER")
    with pytest.raises(ValueError):
        Run(parse(ENVELOPE))  # no callback in this delivery


# --- the examples --------------------------------------------------------------------------------
def test_the_lambda_example_reads_the_envelope():
    assert lambda_handler(ENVELOPE) == {
        "output": {"sessionId": "ses_1", "attempt": 2, "words": 3},
        "usage": {"inputTokens": 3, "outputTokens": 1},
    }
    assert lambda_handler({**ENVELOPE, "input": {"throttled": True}})["rateLimited"] is True


@pytest.fixture
def example():
    secret = new_secret()
    server = make_server([secret])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.secret = secret
    server.url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield server
    server.shutdown()
    server.server_close()


def test_the_webhook_example_answers_sync_refuses_strangers_and_repeats_its_result(example):
    body, headers = signed(ENVELOPE, [example.secret])
    first = httpx.post(example.url, content=body, headers=headers)
    assert first.status_code == 200
    assert first.json() == {"output": {"words": 3}, "usage": {"inputTokens": 3, "outputTokens": 1}}
    again_body, again_headers = signed({**ENVELOPE, "attempt": 3, "input": {"text": "changed"}}, [example.secret])
    again = httpx.post(example.url, content=again_body, headers=again_headers)
    assert again.json() == first.json()  # the same session id: the stored result
    body, headers = signed(ENVELOPE, [new_secret()])
    assert httpx.post(example.url, content=body, headers=headers).status_code == 401


def test_the_webhook_example_answers_202_and_completes_through_the_kit(example, callbacks):
    envelope = {**with_callback(callbacks.url), "sessionId": "ses_slow", "input": {"slow": True, "text": "a b"}}
    body, headers = signed(envelope, [example.secret], msg_id="ses_slow")
    answer = httpx.post(example.url, content=body, headers=headers)
    assert answer.status_code == 202
    assert callbacks.two.wait(10)  # the example's thread reports after the 202
    actions = [(p.rsplit("/", 1)[-1], b) for p, _, b in callbacks.requests]
    assert actions == [("progress", {"progress": 50, "message": "halfway"}),
                       ("complete", {"output": {"words": 2}, "usage": {"inputTokens": 2, "outputTokens": 1}})]
