"""The worker on moto: retries with backoff, DLQ and redrive, alerts, cancel, timeout, http, batches."""
from __future__ import annotations

import json

import boto3
import pytest

from chalicelib.clock import FixedClock
from chalicelib.services.batch import process_sqs_event
from tests.functional.helpers import QuietHandler, base_url, local_server, peek, take, work
from tests.functional.test_dispatch import make_agent


def run_now(api, aid, **body):
    r = api.post(f"/api/agents/{aid}/run", body)
    assert r.status_code == 202, r.body
    return r.json["sessionId"]


def session(api, aid, sid):
    return api.get(f"/api/agents/{aid}/sessions/{sid}").json


def retry_round(system, clock):
    """Deliver what is queued after waiting out its delay (virtual time)."""
    sent = take(system)
    assert len(sent) == 1
    clock.advance(sent[0].delay_seconds + 0.999)
    return sent, work(system, sent)


def alerts_queue(system):
    sqs, sns = boto3.client("sqs", region_name="us-east-1"), boto3.client("sns", region_name="us-east-1")
    url = sqs.create_queue(QueueName="alert-tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=system.settings.alert_topic_arn, Protocol="sqs", Endpoint=arn)
    return sqs, url


def test_fail_twice_then_succeed_on_attempt_three_with_backoff(api, system, clock):
    system.worker.rand = lambda: 1.0  # the top of the full-jitter range: delays 1 s, 2 s (sent with 1 s slack)
    aid = make_agent(api, kind="fail", config={"times": 2, "category": "TRANSIENT"})
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["TRANSIENT"]
    s = session(api, aid, sid)
    assert s["status"] == "RETRYING" and s["attempt"] == 1 and s["error"]["category"] == "TRANSIENT"
    assert s["nextAttemptAt"] is not None
    sent, out = retry_round(system, clock)
    assert sent[0].delay_seconds == 0 and out == ["TRANSIENT"]
    sent, out = retry_round(system, clock)
    assert sent[0].delay_seconds == 1 and out == ["succeeded"]
    s = session(api, aid, sid)
    assert s["status"] == "SUCCEEDED" and s["attempt"] == 3 and s["output"] == {"attempt": 3}


@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.99])
def test_backoff_delays_stay_in_the_full_jitter_range(api, system, clock, jitter):
    system.worker.rand = lambda: jitter
    aid = make_agent(api, kind="fail", config={"times": 3}, maxRetries=3)
    sid = run_now(api, aid)
    work(system, take(system))
    for attempt in (1, 2, 3):
        s = session(api, aid, sid)
        wait = (api_time(s["nextAttemptAt"]) - clock.now().timestamp())
        assert 0 <= wait <= 2 ** (attempt - 1) + 1e-6
        assert abs(wait - jitter * 2 ** (attempt - 1)) < 0.01
        retry_round(system, clock)


def api_time(s):
    from datetime import datetime

    return datetime.fromisoformat(s).timestamp()


@pytest.mark.parametrize("settings_overrides", [{"alert_after_failures": 2}])
def test_always_failing_run_dies_into_the_dlq_alerts_once_and_redrives(api, system, clock, settings_overrides):
    sqs, tap = alerts_queue(system)
    aid = make_agent(api, kind="fail", config={}, maxRetries=1)
    sids = []
    for _ in range(3):  # three dead runs in a row: the alert fires once, at the second
        sid = run_now(api, aid)
        sids.append(sid)
        work(system, take(system))
        retry_round(system, clock)
        s = session(api, aid, sid)
        assert s["status"] == "DEAD" and s["attempt"] == 2 and s["error"]["category"] == "AGENT_ERROR"
    alerts = sqs.receive_message(QueueUrl=tap, MaxNumberOfMessages=10).get("Messages", [])
    assert len(alerts) == 1
    dlq = api.get("/api/dlq").json["items"]
    assert sorted(i["sessionId"] for i in dlq) == sorted(sids)
    assert all(i["error"]["category"] == "AGENT_ERROR" and i["attempt"] == 2 for i in dlq)
    assert len(peek(system, system.settings.dlq_url)) == 3
    r = api.post("/api/dlq/redrive", {"sessionIds": [sids[0]]})
    assert r.status_code == 202 and r.json == {"redriven": 1}
    assert len(peek(system, system.settings.dlq_url)) == 2
    dead = session(api, aid, sids[0])  # history kept: the dead run stays, pointing at its redrive
    assert dead["status"] == "DEAD" and dead["error"]["category"] == "AGENT_ERROR" and dead["redrivenTo"]
    s = session(api, aid, dead["redrivenTo"])
    assert s["status"] == "QUEUED" and s["trigger"] == "REDRIVE" and s["attempt"] == 0
    assert s["redrivenFrom"] == sids[0]
    assert len(api.get("/api/dlq").json["items"]) == 2, "the redriven run leaves the DLQ list"
    assert work(system, take(system)) == ["AGENT_ERROR"]
    assert session(api, aid, dead["redrivenTo"])["attempt"] == 1
    assert api.post("/api/dlq/redrive", {"sessionIds": [sids[0]]}).json == {"redriven": 0}


def test_other_tenants_cannot_see_or_redrive_my_dead_runs(api, other_api, admin_api, system, clock):
    aid = make_agent(api, kind="fail", config={"category": "PERMANENT"})
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["PERMANENT"]
    assert other_api.get("/api/dlq").json["items"] == []
    assert other_api.post("/api/dlq/redrive", {"sessionIds": [sid]}).json == {"redriven": 0}
    assert [i["sessionId"] for i in admin_api.get("/api/dlq").json["items"]] == [sid]


def test_permanent_error_skips_retries(api, system, clock):
    aid = make_agent(api, kind="fail", config={"category": "PERMANENT"}, maxRetries=5)
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["PERMANENT"]
    s = session(api, aid, sid)
    assert s["status"] == "DEAD" and s["attempt"] == 1
    assert take(system) == []


def test_cancel_a_queued_run_never_starts(api, system, clock):
    aid = make_agent(api)
    sid = run_now(api, aid)
    sent = take(system)
    r = api.post(f"/api/agents/{aid}/sessions/{sid}/cancel")
    assert r.status_code == 202 and r.json["status"] == "CANCELLED"
    assert work(system, sent) == ["duplicate"]
    assert session(api, aid, sid)["startedAt"] is None
    assert api.post(f"/api/agents/{aid}/sessions/{sid}/cancel").status_code == 409


class CancellingClock(FixedClock):
    """Calls ``hook`` once, the n-th time the run sleeps: a cancel arriving mid-run."""

    def __init__(self, start, n, hook):
        super().__init__(start)
        self.n, self.hook, self.calls = n, hook, 0

    def sleep(self, seconds):
        self.calls += 1
        if self.calls == self.n:
            self.hook()
        super().sleep(seconds)


def test_cancel_a_running_run_stops_it_at_its_next_check(api, system, clock):
    aid = make_agent(api, kind="sleep", config={"seconds": 60, "progressEvery": 1})
    sid = run_now(api, aid)
    sent = take(system)
    system.clock = CancellingClock(clock.now(), 3, lambda: api.post(f"/api/agents/{aid}/sessions/{sid}/cancel"))
    assert work(system, sent) == ["CANCELLED"]
    s = session(api, aid, sid)
    assert s["status"] == "CANCELLED" and s["error"]["category"] == "CANCELLED"
    assert s["durationMs"] < 60_000


def test_a_run_past_its_timeout_is_a_timeout(api, system, clock):
    aid = make_agent(api, kind="sleep", config={"seconds": 30}, timeoutSeconds=2, maxRetries=0)
    sid = run_now(api, aid)
    assert work(system, take(system)) == ["TIMEOUT"]
    s = session(api, aid, sid)
    assert s["status"] == "DEAD" and s["error"]["category"] == "TIMEOUT"


class Handler(QuietHandler):
    def do_GET(self):
        code = int(self.path.strip("/"))
        headers = {"Retry-After": "7"} if code == 429 else {}
        self.reply(code, json.dumps({"code": code}).encode(), {**headers, "Content-Type": "application/json"})


@pytest.fixture
def http_server():
    with local_server(Handler) as server:
        yield base_url(server)


@pytest.mark.parametrize("code,result,status", [
    (200, "succeeded", "SUCCEEDED"),
    (429, "RATE_LIMITED", "RETRYING"),
    (500, "TRANSIENT", "RETRYING"),
    (404, "PERMANENT", "DEAD"),
])
def test_http_kind_outcomes(api, system, clock, http_server, code, result, status):
    system.worker.rand = lambda: 0.0
    aid = make_agent(api, kind="http", config={"url": f"{http_server}/{code}"})
    sid = run_now(api, aid)
    assert work(system, take(system)) == [result]
    s = session(api, aid, sid)
    assert s["status"] == status
    if code == 429:  # a rate-limited wait lasts Retry-After (7 s) and uses no retry
        assert api_time(s["nextAttemptAt"]) - clock.now().timestamp() == pytest.approx(7, abs=0.01)
        assert s["rateLimitedWaits"] == 1
    if code == 200:
        assert s["output"]["status"] == 200 and s["output"]["body"] == {"code": 200}


def sqs_event(bodies):
    return {"Records": [
        {"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": b if isinstance(b, str) else json.dumps(b),
         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"}
        for i, b in enumerate(bodies)
    ]}


def test_partial_batch_failure_reports_exactly_the_failed_ids(api, system, clock, monkeypatch):
    from chalicelib.errors import StorageError

    ok = make_agent(api)
    boom = make_agent(api)
    s1, s2 = run_now(api, ok), run_now(api, boom)
    sent = {m.body["a"]: m.body for m in take(system)}
    real = system.worker.handle

    def flaky(body, remaining_ms=None):
        if body["a"] == boom:
            raise StorageError("throttled", retryable=True)
        return real(body, remaining_ms)

    monkeypatch.setattr(system.worker, "handle", flaky)
    resp = process_sqs_event(system, sqs_event([sent[ok], sent[boom], "not json"]))
    assert resp == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert session(api, ok, s1)["status"] == "SUCCEEDED"
    assert session(api, boom, s2)["status"] == "QUEUED"


def test_the_queues_redrive_policy_moves_a_poison_message_to_the_dlq(system):
    from chalicelib.adapters.provision import MAX_RECEIVE_COUNT

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = system.settings.work_queue_url
    sqs.send_message(QueueUrl=url, MessageBody='{"t": "x", "a": "y", "s": "z", "n": 1}')
    for _ in range(MAX_RECEIVE_COUNT):  # the handler crashes every time: never deleted
        got = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages", [])
        assert len(got) == 1
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages", []) == []
    dead = sqs.receive_message(QueueUrl=system.settings.dlq_url).get("Messages", [])
    assert [json.loads(m["Body"])["s"] for m in dead] == ["z"]


def test_runs_of_a_deleted_agent_end_and_free_their_slots(api, system, clock):
    aid = make_agent(api)
    for _ in range(3):
        run_now(api, aid)
    sent = take(system)
    assert api.delete(f"/api/agents/{aid}").status_code == 204
    assert work(system, sent) == ["dead"] * 3
    assert api.get("/api/scheduler/status").json["slotsInUse"] == 0
    other = make_agent(api, "healthy")
    run_now(api, other)
    assert work(system, take(system)) == ["succeeded"], "the slots were freed at once"
    assert api.post("/api/dlq/redrive", {}).json == {"redriven": 0}, "nothing to run a deleted agent with"
