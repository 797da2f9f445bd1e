"""Agent kinds, registry and executor. No AWS, no real sleeping (a fake clock);
the ``http`` kind runs against a real local HTTP server (127.0.0.1, port 0)."""
from __future__ import annotations

import io
import json
import socket
import threading
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from chalicelib.agents import (
    AgentFailure,
    KindDeps,
    Outcome,
    RunContext,
    execute,
    get_kind,
    kind_names,
    register,
)
from chalicelib.agents.jsonsafe import MAX_OUTPUT_BYTES, bounded, to_jsonable
from chalicelib.agents.kinds.http_kind import HttpKind, parse_retry_after
from chalicelib.agents.kinds.lambda_kind import LambdaKind
from chalicelib.agents.net import NetPolicy
from chalicelib.agents.policy import AgentPolicy
from chalicelib.clock import FixedClock
from chalicelib.domain.model import AgentKindName, ErrorCategory
from chalicelib.errors import ValidationError

TIMEOUT = 5.0  # executor timeout for kinds that finish at once (never reached)


class FakeContext:
    """RunContext on a virtual clock: ``sleep`` advances time instantly, in slices."""

    SLICE = 0.25

    def __init__(
        self,
        *,
        attempt: int = 1,
        input: dict | None = None,
        deadline: float = 1000.0,
        cancel_at: float | None = None,
    ) -> None:
        self.tenant_id = "t1"
        self.agent_id = "agt_1"
        self.session_id = "ses_1"
        self.attempt = attempt
        self.input = input
        self.now = 0.0
        self.deadline = deadline
        self.cancel_at = cancel_at
        self.was_cancelled = False
        self.progress_calls: list[tuple[float, str]] = []

    def cancel(self) -> None:
        self.was_cancelled = True

    def progress(self, percent: float, message: str = "") -> None:
        self.progress_calls.append((percent, message))

    def cancelled(self) -> bool:
        if self.cancel_at is not None and self.now >= self.cancel_at:
            self.was_cancelled = True
        return self.was_cancelled or self.now >= self.deadline

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - self.now)

    def sleep(self, seconds: float) -> bool:
        waited = 0.0
        while waited < seconds - 1e-9:
            if self.cancelled():
                return False
            step = min(self.SLICE, seconds - waited)
            self.now += step
            waited += step
        return True


def run(kind_name: str, config: dict, ctx: FakeContext | None = None, deps=None) -> Outcome:
    kind = get_kind(kind_name)
    return execute(kind, kind.validate_config(config), ctx or FakeContext(), deps or KindDeps(), TIMEOUT)


def field_of(kind_name: str, config) -> str:
    with pytest.raises(ValidationError) as info:
        get_kind(kind_name).validate_config(config)
    assert info.value.field is not None
    assert info.value.field in info.value.message
    return info.value.field


def test_fake_context_satisfies_protocol():
    assert isinstance(FakeContext(), RunContext)


# --- registry ----------------------------------------------------------------
def test_kind_names_are_the_built_ins():
    assert kind_names() == ["echo", "fail", "http", "lambda", "sleep", "webhook"]
    assert kind_names() == sorted(k.value for k in AgentKindName)
    for name in kind_names():
        assert get_kind(name).name == name


def test_get_kind_accepts_the_enum():
    assert get_kind(AgentKindName.SLEEP).name == "sleep"


def test_unknown_kind():
    with pytest.raises(ValidationError) as info:
        get_kind("x")
    assert info.value.field == "kind"
    assert info.value.message == "unknown kind 'x'; expected one of echo, fail, http, lambda, sleep, webhook"


def test_register_a_new_kind():
    class Upper:
        name = "test-upper"

        def validate_config(self, config):
            return dict(config or {})

        def run(self, config, ctx, deps):
            return {"text": str(ctx.input["text"]).upper()}

    register(Upper())
    try:
        assert "test-upper" in kind_names()
        out = execute(get_kind("test-upper"), {}, FakeContext(input={"text": "hi"}), KindDeps(), TIMEOUT)
        assert out == Outcome(ok=True, output={"text": "HI"})
    finally:
        from chalicelib.agents import registry

        registry._kinds.pop("test-upper", None)


def test_register_refuses_a_nameless_kind():
    with pytest.raises(ValueError):
        register(object())


# --- echo --------------------------------------------------------------------
def test_echo():
    out = run("echo", {"message": "hi"}, FakeContext(input={"a": 1}))
    assert out == Outcome(ok=True, output={"message": "hi", "input": {"a": 1}})


def test_echo_without_message_or_input():
    assert run("echo", {}).output == {"message": None, "input": None}


@pytest.mark.parametrize(
    "config, field",
    [
        ({"message": 5}, "config.message"),
        ({"bogus": 1}, "config.bogus"),
        ([], "config"),
        ("x", "config"),
    ],
)
def test_echo_validation(config, field):
    assert field_of("echo", config) == field


# --- sleep -------------------------------------------------------------------
def test_sleep_reports_progress_in_order():
    ctx = FakeContext()
    out = run("sleep", {"seconds": 3}, ctx)
    assert out == Outcome(ok=True, output={"slept": 3})
    assert ctx.progress_calls == [
        (33.33, "slept 1s of 3s"),
        (66.67, "slept 2s of 3s"),
        (100.0, "slept 3s of 3s"),
    ]
    assert ctx.now == pytest.approx(3.0)


def test_sleep_with_fractional_steps():
    ctx = FakeContext()
    out = run("sleep", {"seconds": 2.5, "progressEvery": 1}, ctx)
    assert out.output == {"slept": 2.5}
    assert [m for _, m in ctx.progress_calls] == [
        "slept 1s of 2.5s",
        "slept 2s of 2.5s",
        "slept 2.5s of 2.5s",
    ]
    percents = [p for p, _ in ctx.progress_calls]
    assert percents == sorted(percents) and percents[-1] == 100.0


def test_sleep_normalises_config():
    assert get_kind("sleep").validate_config({"seconds": Decimal("2")}) == {
        "seconds": 2,
        "progressEvery": 1,
    }


def test_sleep_zero_seconds():
    ctx = FakeContext()
    assert run("sleep", {"seconds": 0}, ctx).output == {"slept": 0}
    assert ctx.progress_calls == []


def test_sleep_cancel_stops_it_early():
    ctx = FakeContext(cancel_at=2.5)
    out = run("sleep", {"seconds": 10, "progressEvery": 1}, ctx)
    assert out.ok is False
    assert out.category is ErrorCategory.CANCELLED
    assert out.message == "cancelled"
    assert [m for _, m in ctx.progress_calls] == ["slept 1s of 10s", "slept 2s of 10s"]
    assert ctx.now < 3


def test_sleep_past_the_deadline_is_a_timeout():
    ctx = FakeContext(deadline=4)
    out = run("sleep", {"seconds": 10}, ctx)
    assert out.category is ErrorCategory.TIMEOUT
    assert len(ctx.progress_calls) == 4


def test_sleep_caps_the_number_of_progress_reports():
    ctx = FakeContext()
    run("sleep", {"seconds": 900, "progressEvery": 0.001}, ctx)
    assert len(ctx.progress_calls) == 1000


@pytest.mark.parametrize(
    "config, field",
    [
        ({}, "config.seconds"),
        ({"seconds": None}, "config.seconds"),
        ({"seconds": "5"}, "config.seconds"),
        ({"seconds": True}, "config.seconds"),
        ({"seconds": -1}, "config.seconds"),
        ({"seconds": 901}, "config.seconds"),
        ({"seconds": float("nan")}, "config.seconds"),
        ({"seconds": 1, "progressEvery": 0}, "config.progressEvery"),
        ({"seconds": 1, "progressEvery": "1"}, "config.progressEvery"),
        ({"seconds": 1, "every": 1}, "config.every"),
        (None, "config.seconds"),
    ],
)
def test_sleep_validation(config, field):
    assert field_of("sleep", config) == field


# --- fail --------------------------------------------------------------------
def test_fail_times_two_fails_twice_then_succeeds():
    config = {"times": 2}
    first, second, third = (run("fail", config, FakeContext(attempt=n)) for n in (1, 2, 3))
    assert first.category is second.category is ErrorCategory.AGENT_ERROR
    assert not first.ok and not second.ok
    assert third == Outcome(ok=True, output={"attempt": 3})


def test_fail_honours_category_and_message():
    out = run("fail", {"times": 1, "category": "TRANSIENT", "message": "boom"})
    assert (out.ok, out.category, out.message) == (False, ErrorCategory.TRANSIENT, "boom")
    assert out.category.retryable


def test_fail_permanent_is_not_retryable():
    out = run("fail", {"category": "permanent"})
    assert out.category is ErrorCategory.PERMANENT and not out.category.retryable


def test_fail_without_times_always_fails():
    for attempt in (1, 2, 50):
        out = run("fail", {}, FakeContext(attempt=attempt))
        assert out.ok is False and out.category is ErrorCategory.AGENT_ERROR
        assert str(attempt) in out.message


def test_fail_times_zero_succeeds_at_once():
    assert run("fail", {"times": 0}).output == {"attempt": 1}


@pytest.mark.parametrize(
    "config, field",
    [
        ({"times": -1}, "config.times"),
        ({"times": "2"}, "config.times"),
        ({"times": 1.5}, "config.times"),
        ({"times": False}, "config.times"),
        ({"category": "CANCELLED"}, "config.category"),
        ({"category": "NOPE"}, "config.category"),
        ({"category": 3}, "config.category"),
        ({"message": ["x"]}, "config.message"),
        ({"count": 1}, "config.count"),
    ],
)
def test_fail_validation(config, field):
    assert field_of("fail", config) == field


# --- lambda ------------------------------------------------------------------
FN = "agent-scheduler-agent-t1-report"  # a function tenant t1 may invoke by default


class FakeLambda:
    def __init__(self, response: dict | None = None, error: Exception | None = None) -> None:
        self.response = response or {}
        self.error = error
        self.calls: list[dict] = []

    def invoke(self, **kwargs):
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return self.response


def client_error(code: str, status: int, headers: dict | None = None) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
        },
        "Invoke",
    )


def test_lambda_success():
    client = FakeLambda({"StatusCode": 200, "Payload": io.BytesIO(b'{"ok": true, "n": 2}')})
    out = run("lambda", {"functionName": FN, "payload": {"x": 1}}, deps=KindDeps(lambda_client=client))
    assert out == Outcome(ok=True, output={"ok": True, "n": 2})
    (call,) = client.calls
    assert call["FunctionName"] == FN
    event = json.loads(call["Payload"])
    assert event["type"] == "agent.run" and event["input"] == {"x": 1}  # the payload stands in for no input
    assert isinstance(call["Payload"], bytes)


def test_lambda_without_payload_sends_the_run():
    client = FakeLambda({"StatusCode": 200, "Payload": io.BytesIO(b"")})
    out = run(
        "lambda",
        {"functionName": f"arn:aws:lambda:us-east-1:123456789012:function:{FN}:prod"},
        FakeContext(attempt=2, input={"k": "v"}),
        KindDeps(lambda_client=client),
    )
    assert out == Outcome(ok=True, output=None)
    event = json.loads(client.calls[0]["Payload"])  # the run envelope, as webhook agents get it
    assert (event["type"], event["sessionId"], event["attempt"], event["input"]) == ("agent.run", "ses_1", 2, {"k": "v"})
    assert event["agent"]["id"] == "agt_1" and event["callback"] is None


def test_lambda_function_error():
    payload = json.dumps({"errorMessage": "division by zero", "errorType": "ZeroDivisionError"})
    client = FakeLambda(
        {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(payload.encode())}
    )
    out = run("lambda", {"functionName": FN}, deps=KindDeps(lambda_client=client))
    assert out.ok is False
    assert out.category is ErrorCategory.AGENT_ERROR
    assert "division by zero" in out.message


@pytest.mark.parametrize(
    "error, category",
    [
        (client_error("ResourceNotFoundException", 404), ErrorCategory.PERMANENT),
        (client_error("AccessDeniedException", 403), ErrorCategory.PERMANENT),
        (client_error("TooManyRequestsException", 429), ErrorCategory.TRANSIENT),
        (client_error("ServiceException", 500), ErrorCategory.TRANSIENT),
        (client_error("SomethingNew", 503), ErrorCategory.TRANSIENT),
    ],
)
def test_lambda_client_errors(error, category):
    out = run("lambda", {"functionName": FN}, deps=KindDeps(lambda_client=FakeLambda(error=error)))
    assert out.category is category
    assert error.response["Error"]["Code"] in out.message


def test_lambda_throttle_keeps_retry_after():
    error = client_error("TooManyRequestsException", 429, {"retry-after": "3"})
    out = run("lambda", {"functionName": FN}, deps=KindDeps(lambda_client=FakeLambda(error=error)))
    assert (out.category, out.retry_after) == (ErrorCategory.TRANSIENT, 3.0)


def test_lambda_without_client_is_internal():
    out = run("lambda", {"functionName": FN})
    assert out.category is ErrorCategory.INTERNAL


def test_lambda_kind_never_creates_a_client():
    assert LambdaKind().validate_config({"functionName": "f"}) == {"functionName": "f"}


@pytest.mark.parametrize(
    "config, field",
    [
        ({}, "config.functionName"),
        ({"functionName": 3}, "config.functionName"),
        ({"functionName": "has space"}, "config.functionName"),
        ({"functionName": "f" * 171}, "config.functionName"),
        ({"functionName": "f", "payload": {1, 2}}, "config.payload"),
        ({"functionName": "f", "payload": float("inf")}, "config.payload"),
        ({"functionName": "f", "qualifier": "x"}, "config.qualifier"),
    ],
)
def test_lambda_validation(config, field):
    assert field_of("lambda", config) == field


# --- executor ----------------------------------------------------------------
class BlockingKind:
    """Waits on an Event; checks the context it is left with after a timeout."""

    name = "blocking"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen_after: dict = {}
        self.done = threading.Event()

    def validate_config(self, config):
        return config

    def run(self, config, ctx, deps):
        self.release.wait(5)
        self.seen_after = {
            "cancelled": ctx.cancelled(),
            "sleep": ctx.sleep(1),
            "remaining": ctx.remaining_seconds(),
        }
        ctx.progress(50, "too late")
        self.done.set()
        return {"late": True}


def test_executor_timeout():
    kind, ctx = BlockingKind(), FakeContext()
    out = execute(kind, {}, ctx, KindDeps(), 0.05)
    assert out.ok is False
    assert out.category is ErrorCategory.TIMEOUT
    assert "0.05s" in out.message
    # the abandoned run is fenced off: it sees itself cancelled and cannot report
    kind.release.set()
    assert kind.done.wait(2)
    assert kind.seen_after == {"cancelled": True, "sleep": False, "remaining": 0.0}
    assert ctx.progress_calls == []


class RaisingKind:
    name = "raising"

    def __init__(self, exc: BaseException, before=None) -> None:
        self.exc = exc
        self.before = before

    def validate_config(self, config):
        return config

    def run(self, config, ctx, deps):
        if self.before:
            self.before(ctx)
        raise self.exc


def test_executor_maps_other_exceptions_to_agent_error():
    out = execute(RaisingKind(KeyError("missing")), {}, FakeContext(), KindDeps(), TIMEOUT)
    assert (out.category, out.message) == (ErrorCategory.AGENT_ERROR, "KeyError: 'missing'")


def test_executor_keeps_agent_failure_details():
    failure = AgentFailure(ErrorCategory.TRANSIENT, "slow down", retry_after=7)
    out = execute(RaisingKind(failure), {}, FakeContext(), KindDeps(), TIMEOUT)
    assert out == Outcome(ok=False, category=ErrorCategory.TRANSIENT, message="slow down", retry_after=7.0)


def test_executor_cancelled_failure():
    failure = AgentFailure(ErrorCategory.CANCELLED, "cancelled")
    out = execute(RaisingKind(failure), {}, FakeContext(), KindDeps(), TIMEOUT)
    assert out.category is ErrorCategory.CANCELLED


def test_executor_error_after_cancel_is_cancelled():
    kind = RaisingKind(RuntimeError("interrupted"), before=lambda ctx: None)
    ctx = FakeContext()
    ctx.cancel()
    out = execute(kind, {}, ctx, KindDeps(), TIMEOUT)
    assert out.category is ErrorCategory.CANCELLED


def test_executor_bad_stored_config_is_permanent():
    out = execute(get_kind("sleep"), {"seconds": "soon"}, FakeContext(), KindDeps(), TIMEOUT)
    assert out.category is ErrorCategory.PERMANENT
    assert "config.seconds" in out.message


def test_executor_truncates_big_output():
    class Big:
        name = "big"

        def validate_config(self, config):
            return config

        def run(self, config, ctx, deps):
            return {"data": "é" * 20_000}

    out = execute(Big(), {}, FakeContext(), KindDeps(), TIMEOUT)
    assert out.ok is True
    assert out.output["truncated"] is True
    assert out.output["preview"].startswith('{"data":"éé')
    assert len(json.dumps(out.output, ensure_ascii=False).encode()) <= MAX_OUTPUT_BYTES
    assert len(json.dumps(out.output).encode()) <= 6 * MAX_OUTPUT_BYTES


def test_bounded_keeps_small_values_and_limits_big_ones():
    assert bounded({"a": [1, 2]}) == {"a": [1, 2]}
    for size in (100, 1000, 5000):
        marker = bounded("\"q\"" * 10_000, max_bytes=size)
        assert len(json.dumps(marker, ensure_ascii=False).encode()) <= size
        assert marker["truncated"] is True


def test_output_is_made_json_safe():
    class Odd:
        def __repr__(self):
            return "<odd>"

    value = {
        "d": Decimal("1.5"),
        "i": Decimal("2"),
        "t": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "s": {3},
        "tu": (1, "a"),
        "b": b"hi",
        "nan": float("nan"),
        "e": ErrorCategory.TIMEOUT,
        1: "int key",
        "o": Odd(),
    }
    safe = to_jsonable(value)
    json.dumps(safe, allow_nan=False)
    assert safe == {
        "d": 1.5,
        "i": 2,
        "t": "2024-01-02T03:04:05+00:00",
        "s": [3],
        "tu": [1, "a"],
        "b": "hi",
        "nan": "nan",
        "e": "TIMEOUT",
        "1": "int key",
        "o": "<odd>",
    }


def test_cyclic_output_does_not_hang():
    loop: list = []
    loop.append(loop)
    json.dumps(to_jsonable(loop))


def test_agent_failure_fields():
    failure = AgentFailure("TRANSIENT", "x", retry_after=-3)
    assert failure.category is ErrorCategory.TRANSIENT
    assert (failure.message, failure.retry_after, str(failure)) == ("x", 0.0, "x")
    assert AgentFailure(ErrorCategory.PERMANENT, "y").retry_after is None


# --- http (real local server) -------------------------------------------------
RELEASE = threading.Event()  # lets the /slow handler finish at teardown


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Handler.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        path = self.path.split("?")[0]
        if path == "/json":
            self._send(200, b'{"hello": "world", "n": [1, 2]}', {"Content-Type": "application/json"})
        elif path == "/text":
            self._send(200, b"plain words", {"Content-Type": "text/plain; charset=utf-8"})
        elif path == "/big":
            self._send(200, b"x" * 200_000, {"Content-Type": "text/plain"})
        elif path == "/echo":
            self._send(201, body, {"Content-Type": "application/json"})
        elif path == "/429":
            self._send(429, b"slow down", {"Retry-After": "7"})
        elif path == "/429-date":
            self._send(429, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"})
        elif path == "/usage":
            self._send(200, b'{"answer": 1, "usage": {"inputTokens": 10, "outputTokens": 2, "costUsd": 0.01}}',
                       {"Content-Type": "application/json"})
        elif path == "/bad-usage":
            self._send(200, b'{"answer": 1, "usage": {"inputTokens": -5}}', {"Content-Type": "application/json"})
        elif path == "/503-date":
            self._send(503, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"})
        elif path == "/500":
            self._send(500, b"kaboom")
        elif path == "/302":
            self._send(302, b"", {"Location": "http://elsewhere.example/x?token=secret"})
        elif path == "/slow":
            RELEASE.wait(5)
            self._send(200, b"late")
        else:
            self._send(404, b"no such page")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        RELEASE.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def deps():
    return KindDeps(policy=AgentPolicy(net=NetPolicy(allow_loopback=True)))


def call(config: dict, deps: KindDeps, ctx: FakeContext | None = None) -> Outcome:
    kind = get_kind("http")
    return execute(kind, kind.validate_config(config), ctx or FakeContext(), deps, TIMEOUT)


def test_200_json(server, deps):
    out = call({"url": f"{server}/json"}, deps)
    assert out == Outcome(ok=True, output={"status": 200, "body": {"hello": "world", "n": [1, 2]}})


def test_200_text(server, deps):
    out = call({"url": f"{server}/text"}, deps)
    assert out.output == {"status": 200, "body": "plain words"}


def test_big_body_is_bounded(server, deps):
    out = call({"url": f"{server}/big"}, deps)
    assert out.ok and out.output["bodyTruncated"] is True
    assert len(out.output["body"]) <= 8 * 1024
    # the connection is not reused half-read: a following request still works
    assert call({"url": f"{server}/json"}, deps).ok


def test_post_sends_json_body_and_headers(server, deps):
    out = call(
        {
            "url": f"{server}/echo",
            "method": "post",
            "headers": {"X-Trace": "abc"},
            "body": {"a": [1, True, None]},
        },
        deps,
    )
    assert out.output == {"status": 201, "body": {"a": [1, True, None]}}
    request = Handler.seen[-1]
    assert request["method"] == "POST"
    assert request["headers"]["X-Trace"] == "abc"
    assert request["headers"]["Content-Type"] == "application/json"


def test_head(server, deps):
    assert call({"url": f"{server}/json", "method": "HEAD"}, deps).output == {"status": 200, "body": None}


def test_429_is_rate_limited_with_retry_after(server, deps):
    out = call({"url": f"{server}/429"}, deps)
    assert (out.ok, out.category, out.retry_after) == (False, ErrorCategory.RATE_LIMITED, 7.0)
    assert "429" in out.message and "slow down" in out.message


def test_429_with_http_date_retry_after(server):
    clock = FixedClock(datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc))
    kind = HttpKind(clock=clock)
    deps = KindDeps(policy=AgentPolicy(net=NetPolicy(allow_loopback=True)))
    out = execute(kind, kind.validate_config({"url": f"{server}/429-date"}), FakeContext(), deps, TIMEOUT)
    assert (out.category, out.retry_after) == (ErrorCategory.RATE_LIMITED, 30.0)


def test_a_top_level_usage_object_is_the_runs_usage(server, deps):
    out = call({"url": f"{server}/usage"}, deps)
    assert out.ok and out.usage == {"inputTokens": 10, "outputTokens": 2, "costUsd": 0.01}
    assert out.output["body"]["answer"] == 1
    bad = call({"url": f"{server}/bad-usage"}, deps)  # not a usage object: the run still succeeds, no usage
    assert bad.ok and bad.usage is None
    assert call({"url": f"{server}/json"}, deps).usage is None


def test_503_with_http_date_retry_after(server):
    clock = FixedClock(datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc))
    kind = HttpKind(clock=clock)
    deps = KindDeps(policy=AgentPolicy(net=NetPolicy(allow_loopback=True)))
    out = execute(kind, kind.validate_config({"url": f"{server}/503-date"}), FakeContext(), deps, TIMEOUT)
    assert (out.category, out.retry_after) == (ErrorCategory.TRANSIENT, 30.0)


def test_500_is_transient(server, deps):
    out = call({"url": f"{server}/500"}, deps)
    assert (out.category, out.retry_after) == (ErrorCategory.TRANSIENT, None)
    assert "HTTP 500" in out.message


def test_404_is_permanent(server, deps):
    out = call({"url": f"{server}/missing"}, deps)
    assert out.category is ErrorCategory.PERMANENT
    assert "HTTP 404" in out.message


def test_redirect_is_not_followed_and_secrets_are_not_echoed(server, deps):
    out = call({"url": f"{server}/302?key=hunter2"}, deps)
    assert out.category is ErrorCategory.PERMANENT
    assert "elsewhere.example/x" in out.message
    assert "secret" not in out.message and "hunter2" not in out.message


def test_connection_refused_is_transient(deps):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    out = call({"url": f"http://127.0.0.1:{port}/"}, deps)
    assert out.category is ErrorCategory.TRANSIENT
    assert "NewConnectionError" in out.message


def test_read_timeout_at_the_deadline_is_timeout(server, deps):
    out = call({"url": f"{server}/slow"}, deps, FakeContext(deadline=0.2))
    assert out.category is ErrorCategory.TIMEOUT


def test_no_time_left_does_not_send(server, deps):
    before = len(Handler.seen)
    out = call({"url": f"{server}/json"}, deps, FakeContext(deadline=0))
    assert out.category is ErrorCategory.TIMEOUT
    assert len(Handler.seen) == before


def test_without_a_policy_the_settings_decide(server, monkeypatch):
    monkeypatch.delenv("SCHEDULER_ENV", raising=False)  # local: loopback allowed
    assert call({"url": f"{server}/json"}, KindDeps()).ok
    monkeypatch.setenv("SCHEDULER_ENV", "aws")
    monkeypatch.setenv("SCHEDULER_JWT_SECRET", "s")
    out = call({"url": f"{server}/json"}, KindDeps())
    assert out.category is ErrorCategory.PERMANENT
    assert "refused 127.0.0.1: loopback range 127.0.0.0/8" in out.message


def test_parse_retry_after():
    now = datetime(2015, 10, 21, 7, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:01:00 GMT", now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 06:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None


def test_config_is_normalised():
    assert get_kind("http").validate_config({"url": "https://example.com/x", "method": "post"}) == {
        "url": "https://example.com/x",
        "method": "POST",
        "headers": {},
    }


@pytest.mark.parametrize(
    "config, field",
    [
        ({}, "config.url"),
        ({"url": 5}, "config.url"),
        ({"url": "ftp://example.com/"}, "config.url"),
        ({"url": "file:///etc/passwd"}, "config.url"),
        ({"url": "http://"}, "config.url"),
        ({"url": "http://example.com:99999/"}, "config.url"),
        ({"url": "http://a.com", "method": "TRACE"}, "config.method"),
        ({"url": "http://a.com", "method": 1}, "config.method"),
        ({"url": "http://a.com", "headers": ["x"]}, "config.headers"),
        ({"url": "http://a.com", "headers": {"X-A": 1}}, "config.headers.X-A"),
        ({"url": "http://a.com", "headers": {"X-A": "a\r\nInjected: 1"}}, "config.headers.X-A"),
        ({"url": "http://a.com", "headers": {"bad name": "v"}}, "config.headers"),
        ({"url": "http://a.com", "body": {1, 2}}, "config.body"),
        ({"url": "http://a.com", "method": "HEAD", "body": {}}, "config.body"),
        ({"url": "http://a.com", "timeout": 3}, "config.timeout"),
    ],
)
def test_http_validation(config, field):
    with pytest.raises(ValidationError) as info:
        get_kind("http").validate_config(config)
    assert info.value.field == field
    assert field in info.value.message
