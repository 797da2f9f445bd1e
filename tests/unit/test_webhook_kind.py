"""The webhook kind with a fake HTTP client and a fake key store: what it sends, how it fails."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from standardwebhooks.webhooks import Webhook
from urllib3 import exceptions as u3

from chalicelib.agents.base import AgentFailure, KindDeps, Reported, RunAccepted
from chalicelib.agents.kinds.webhook_kind import WebhookKind
from chalicelib.agents.net import Response
from chalicelib.agents.signing import new_secret
from chalicelib.clock import Clock
from chalicelib.domain.model import ErrorCategory as C
from chalicelib.errors import StorageError

SECRET = new_secret()
CONFIG = {"url": "https://agent.example.com/run", "headers": {"X-Team": "ml"}}


class FakeHttp:
    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.calls = answer, error, []

    def request(self, method, url, **kw):
        self.calls.append((method, url, kw))
        if self.error is not None:
            raise self.error
        return self.answer


class Keys:
    def __init__(self, fail=False):
        self.fail = fail

    def decrypt(self, ciphertext, tenant_id, agent_id):
        if self.fail:
            raise StorageError("decrypt signing secret: KMSThrottlingException", retryable=True)
        assert (ciphertext, tenant_id, agent_id) == ("cipher-1", "t1", "agt_1")
        return SECRET


KEYS = {"current": "cipher-1"}


def ctx(remaining=300.0, keys=KEYS):
    session = SimpleNamespace(timeout_seconds=300, started_at=None, max_attempts=2, scheduled_for=0.0,
                              trigger=None, priority=None, redriven_from=None)
    return SimpleNamespace(
        tenant_id="t1", agent_id="agt_1", session_id="ses_1", attempt=1, input={"q": 1}, deadline=1000.0,
        session=session, agent=SimpleNamespace(agent_id="agt_1", name="a", signing_keys=keys), callback=None,
        remaining_seconds=lambda: remaining, cancelled=lambda: False,
    )


def answer(status, body=b"", headers=None):
    return Response(status=status, headers=headers or {}, body=body, truncated=False, address="203.0.113.9")


def run(http, c=None, keys=None, sync_wait=None):
    deps = KindDeps(http=http, signing_keys=keys or Keys(), sync_wait_seconds=sync_wait)
    return WebhookKind(Clock()).run(CONFIG, c or ctx(), deps)


def test_it_posts_the_signed_envelope_with_the_configured_headers():
    http = FakeHttp(answer(200, b'{"output": 1, "usage": {"outputTokens": 2}}', {"Content-Type": "application/json"}))
    assert run(http) == Reported(1, {"outputTokens": 2})
    ((method, url, kw),) = http.calls
    assert (method, url) == ("POST", "https://agent.example.com/run")
    headers = kw["headers"]
    assert headers["X-Team"] == "ml" and headers["Content-Type"] == "application/json"
    assert Webhook(SECRET).verify(kw["body"], headers)["input"] == {"q": 1}
    assert kw["timeout"].read_timeout == 300.0


def test_the_synchronous_wait_is_the_setting_and_its_end_is_a_timeout():
    http = FakeHttp(error=u3.ReadTimeoutError(None, "/", "read timed out"))
    with pytest.raises(AgentFailure) as info:
        run(http, ctx(remaining=3000.0), sync_wait=120)
    assert http.calls[0][2]["timeout"].read_timeout == 120
    assert info.value.category is C.TIMEOUT and "SCHEDULER_SYNC_WAIT_SECONDS" in info.value.message
    with pytest.raises(AgentFailure) as info:
        run(http, ctx(remaining=30.0), sync_wait=120)
    assert info.value.category is C.TIMEOUT and "deadline" in info.value.message


def test_no_60_second_cap_remains():
    http = FakeHttp(answer(204))
    run(http, ctx(remaining=5000.0))
    assert http.calls[0][2]["timeout"].read_timeout == 840


def test_connection_errors_are_transient_and_202_is_accepted():
    with pytest.raises(AgentFailure) as info:
        run(FakeHttp(error=u3.NewConnectionError(None, "refused")))
    assert info.value.category is C.TRANSIENT
    with pytest.raises(RunAccepted):
        run(FakeHttp(answer(202, b"later")))


def test_without_a_secret_nothing_is_sent_and_a_slow_key_store_is_transient():
    http = FakeHttp(answer(200))
    with pytest.raises(AgentFailure) as info:
        run(http, ctx(keys=None))
    assert info.value.category is C.PERMANENT and not http.calls
    with pytest.raises(AgentFailure) as info:
        run(http, keys=Keys(fail=True))
    assert info.value.category is C.TRANSIENT and not http.calls


@pytest.mark.parametrize("name", ["webhook-id", "HOST", "Content-Encoding"])
def test_reserved_headers_are_refused(name):
    from chalicelib.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        WebhookKind().validate_config({"url": "https://x.example", "headers": {name: "v"}})
    assert info.value.field == "config.headers"


def test_a_private_target_in_aws_is_refused():
    from chalicelib.agents.net import GuardedHttp, NetPolicy

    http = GuardedHttp(NetPolicy(), resolver=lambda host, port: ["10.0.0.5"])
    with pytest.raises(AgentFailure) as info:
        run(http)
    assert info.value.category is C.PERMANENT and "private range" in info.value.message


def test_envelope_times_carry_an_offset():
    http = FakeHttp(answer(200))
    run(http)
    import json

    env = json.loads(http.calls[0][2]["body"])
    assert datetime.fromisoformat(env["deadline"]).tzinfo is not None
    assert env["deadline"] == datetime.fromtimestamp(1000, tz=timezone.utc).isoformat()
