"""The run envelope and the signature headers (pure)."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from types import SimpleNamespace

from standardwebhooks.webhooks import Webhook

from chalicelib.agents.envelope import build_envelope, cancel_envelope, encode
from chalicelib.agents.signing import active_ciphertexts, new_secret, rotated, signature_headers
from chalicelib.domain.model import Priority, Trigger

T = 1772452800.0  # 2026-03-02T12:00:00Z


def ctx(**over):
    session = SimpleNamespace(
        trigger=Trigger.SCHEDULE, priority=Priority.HIGH, scheduled_for=T, timeout_seconds=3600,
        started_at=T + 2.5, max_attempts=4, redriven_from=None, last_heartbeat_details={"page": 7},
    )
    base = dict(
        session=session, agent=SimpleNamespace(agent_id="agt_1", name="researcher"), agent_id="agt_1",
        session_id="ses_1", attempt=2, input={"q": "x"}, deadline=T + 100,
        callback={"url": "https://api.example/api/callbacks/ses_1/2", "token": "tok", "heartbeatSeconds": 60},
    )
    base.update(over)
    return SimpleNamespace(**base)


def test_the_envelope_has_every_field_of_the_contract():
    assert build_envelope(ctx()) == {
        "type": "agent.run",
        "sessionId": "ses_1",
        "attempt": 2,
        "retriesLeft": 2,
        "trigger": "SCHEDULE",
        "priority": "HIGH",
        "scheduledFor": "2026-03-02T12:00:00+00:00",
        "timeoutSeconds": 3600,
        "deadline": "2026-03-02T13:00:02.500+00:00",  # this attempt's start + timeoutSeconds
        "redrivenFrom": None,
        "lastHeartbeatDetails": {"page": 7},
        "agent": {"id": "agt_1", "name": "researcher"},
        "input": {"q": "x"},
        "callback": {"url": "https://api.example/api/callbacks/ses_1/2", "token": "tok", "heartbeatSeconds": 60},
    }


def test_no_callback_is_null_and_the_payload_stands_in_for_no_input():
    env = build_envelope(ctx(callback=None, input=None), {"functionName": "f", "payload": {"p": 1}})
    assert env["callback"] is None and env["input"] == {"p": 1}
    assert build_envelope(ctx(input=None))["input"] is None


def test_a_session_without_heartbeat_details_or_start_uses_the_context():
    session = SimpleNamespace(trigger=Trigger.MANUAL, priority=Priority.NORMAL, scheduled_for=T, timeout_seconds=60,
                              started_at=None, max_attempts=1, redriven_from="ses_0")
    env = build_envelope(ctx(session=session, attempt=1))
    assert env["lastHeartbeatDetails"] is None and env["redrivenFrom"] == "ses_0"
    assert env["retriesLeft"] == 0 and env["deadline"] == "2026-03-02T12:01:40+00:00"


def test_the_body_is_compact_utf8_json():
    body = encode(build_envelope(ctx(input={"text": "héllo"})))
    assert json.loads(body)["input"] == {"text": "héllo"}
    assert "héllo".encode() in body
    assert cancel_envelope("ses_1", 3) == {"type": "agent.cancel", "sessionId": "ses_1", "attempt": 3}


def test_a_secret_is_whsec_and_32_random_bytes():
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_")
    assert len(base64.b64decode(a[len("whsec_"):])) == 32


def test_signature_headers_verify_with_standardwebhooks_for_each_secret():
    s1, s2 = new_secret(), new_secret()
    body = b'{"type":"agent.run"}'
    now = datetime.now(timezone.utc)  # the library checks the timestamp against the wall clock
    headers = signature_headers("ses_1", body, [s1, s2], now)
    assert headers["webhook-id"] == "ses_1" and headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (s1, s2):
        assert Webhook(secret).verify(body, headers) == {"type": "agent.run"}
    only_new = signature_headers("ses_1", body, [s2], now)
    try:
        Webhook(s1).verify(body, only_new)
        raise AssertionError("an old secret must not verify after revocation")
    except Exception as exc:  # WebhookVerificationError
        assert "signature" in str(exc).lower()


def test_rotation_keeps_the_previous_secret_for_24_hours_unless_revoked():
    keys = {"current": "c1"}
    kept = rotated(keys, "c2", T, revoke_previous=False)
    assert kept == {"current": "c2", "previous": "c1", "previousUntil": T + 86400}
    assert active_ciphertexts(kept, T + 86399) == ["c2", "c1"]
    assert active_ciphertexts(kept, T + 86400) == ["c2"]
    assert rotated(keys, "c2", T, revoke_previous=True) == {"current": "c2"}
    assert rotated(None, "c1", T, revoke_previous=False) == {"current": "c1"}
    assert active_ciphertexts(None, T) == []
