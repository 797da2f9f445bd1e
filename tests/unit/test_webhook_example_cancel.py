"""The webhook example answers the scheduler's signed ``agent.cancel`` (not only runs)."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import httpx
import pytest

from chalicelib.agents.signing import new_secret, signature_headers
from examples.webhook_agent import make_server


@pytest.fixture
def example():
    secret = new_secret()
    server = make_server([secret])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, secret, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()

def post(url: str, body: dict, secret: str) -> httpx.Response:
    raw = json.dumps(body).encode()
    # the signature's time is the receiver's now: the example checks it against its own clock
    headers = signature_headers(str(body.get("sessionId")), raw, [secret], datetime.now(timezone.utc))
    return httpx.post(url, content=raw, headers={**headers, "Content-Type": "application/json"}, timeout=5)

def test_a_signed_cancel_notice_is_answered_200_and_remembered(example):
    server, secret, url = example
    r = post(url, {"type": "agent.cancel", "sessionId": "ses_9", "attempt": 1}, secret)
    assert r.status_code == 200, r.text
    assert server.cancelled == {"ses_9"}

def test_a_signed_body_that_is_neither_a_run_nor_a_cancel_is_a_400(example):
    _, secret, url = example
    r = post(url, {"type": "agent.other", "sessionId": "ses_9"}, secret)
    assert r.status_code == 400 and "agent.run" in r.json()["error"]
