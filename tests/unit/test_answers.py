"""The answer table: what each agent answer becomes (pure, no I/O)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.agents.answers import (
    MAX_OUTPUT_BYTES,
    Accepted,
    Failed,
    Succeeded,
    bound_output,
    check_usage,
    classify_http,
    classify_result,
    retry_after_seconds,
)
from chalicelib.domain.model import ErrorCategory as C

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)
DEADLINE = NOW + timedelta(seconds=600)
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
HTTP_DATE = "Mon, 02 Mar 2026 12:02:00 GMT"  # NOW + 120 s
LATE_DATE = "Mon, 02 Mar 2026 14:00:00 GMT"  # after the deadline


def verdict(status, headers=None, body=b"", **kw):
    return classify_http(status, headers or {}, body, now=NOW, deadline=DEADLINE, **kw)


TABLE = [
    # (status, headers, body) -> verdict
    ((202, {}, b""), Accepted()),
    ((202, JSON, b'{"output": "ignored"}'), Accepted()),
    ((200, JSON, b'{"output": {"a": 1}, "usage": {"inputTokens": 3, "outputTokens": 4, "costUsd": 0.01}}'),
     Succeeded({"a": 1}, {"inputTokens": 3, "outputTokens": 4, "costUsd": 0.01})),
    ((200, JSON, b'{"answer": 42}'), Succeeded({"answer": 42})),
    ((201, {}, b'{"output": null}'), Succeeded(None)),
    ((200, JSON, b'[1, 2]'), Succeeded("[1, 2]")),
    ((200, TEXT, b'{"a": 1}'), Succeeded('{"a": 1}')),
    ((200, TEXT, b"done"), Succeeded("done")),
    ((204, {}, b""), Succeeded(None)),
    ((200, JSON, b"not json"), Succeeded("not json")),
    ((429, {}, b""), Failed(C.RATE_LIMITED, "HTTP 429", None)),
    ((429, {"Retry-After": "30"}, b"slow down"), Failed(C.RATE_LIMITED, "HTTP 429: slow down", 30.0)),
    ((429, {"retry-after": HTTP_DATE}, b""), Failed(C.RATE_LIMITED, "HTTP 429", 120.0)),
    ((429, {"Retry-After": "99999"}, b""), Failed(C.RATE_LIMITED, "HTTP 429", 600.0)),  # capped at the deadline
    ((429, {"Retry-After": LATE_DATE}, b""), Failed(C.RATE_LIMITED, "HTTP 429", 600.0)),
    ((503, {"Retry-After": "5"}, b""), Failed(C.RATE_LIMITED, "HTTP 503", 5.0)),
    ((503, {}, b""), Failed(C.TRANSIENT, "HTTP 503", None)),
    ((500, {}, b"boom"), Failed(C.TRANSIENT, "HTTP 500: boom", None)),
    ((502, {"Retry-After": "7"}, b""), Failed(C.TRANSIENT, "HTTP 502", 7.0)),
    ((408, {}, b""), Failed(C.TRANSIENT, "HTTP 408", None)),
    ((410, {}, b"gone"), Failed(C.PERMANENT, "HTTP 410: gone", None)),
    ((400, {}, b""), Failed(C.PERMANENT, "HTTP 400", None)),
    ((404, {}, b""), Failed(C.PERMANENT, "HTTP 404", None)),
    ((301, {"Location": "http://elsewhere/x?k=secret"}, b""),
     Failed(C.PERMANENT, "HTTP 301 (redirects are never followed; it pointed to http://elsewhere/x)", None)),
    ((307, {}, b""), Failed(C.PERMANENT, "HTTP 307 (redirects are never followed)", None)),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(TABLE)])
def test_the_answer_table(answer, expected):
    status, headers, body = answer
    assert verdict(status, headers, body) == expected


def test_every_3xx_and_4xx_but_408_and_429_is_permanent_and_every_5xx_retries():
    for status in range(300, 600):
        got = verdict(status)
        if status in (408,) or status >= 500:
            assert got.category is C.TRANSIENT, status
        elif status == 429:
            assert got.category is C.RATE_LIMITED
        else:
            assert got.category is C.PERMANENT, status


def test_an_output_over_64_kb_is_kept_as_a_preview_and_still_succeeds():
    big = "x" * (MAX_OUTPUT_BYTES + 10)
    got = verdict(200, JSON, json.dumps({"output": big}).encode())
    assert isinstance(got, Succeeded)
    assert got.output == {"truncated": True, "bytes": len(big), "preview": "x" * 4096}  # a text output: its text
    nested = verdict(200, JSON, json.dumps({"output": {"k": big}}).encode())
    compact = json.dumps({"k": big}, separators=(",", ":"))
    assert nested.output == {"truncated": True, "bytes": len(compact), "preview": compact[:4096]}
    text = verdict(200, TEXT, big.encode())
    assert text.output == {"truncated": True, "bytes": len(big), "preview": "x" * 4096}
    # exactly 64 KB is kept whole
    edge = "y" * MAX_OUTPUT_BYTES
    assert verdict(200, TEXT, edge.encode()).output == edge


def test_an_answer_longer_than_what_was_read_is_a_preview_of_its_start():
    got = verdict(200, JSON, b'{"a": "' + b"z" * 5000, body_complete=False, total_bytes=2_000_000)
    assert got.output["truncated"] is True and got.output["bytes"] == 2_000_000
    assert len(got.output["preview"].encode()) == 4096


def test_a_preview_never_cuts_a_character_in_two():
    text = "é" * 40000  # 80,000 bytes
    out = bound_output(text)
    assert out["bytes"] == 80000 and out["preview"] == "é" * 2048


@pytest.mark.parametrize(
    ("usage", "kept", "noted"),
    [
        ({"inputTokens": 1, "outputTokens": 2, "costUsd": 0.5}, {"inputTokens": 1, "outputTokens": 2, "costUsd": 0.5}, 0),
        ({"inputTokens": -1, "outputTokens": 2}, {"outputTokens": 2}, 1),
        ({"inputTokens": 1.5}, None, 1),
        ({"inputTokens": True}, None, 1),
        ({"costUsd": -0.1, "inputTokens": 3}, {"inputTokens": 3}, 1),
        ({"costUsd": "1"}, None, 1),
        ({"tokens": 3}, None, 1),
        ("lots", None, 1),
        (None, None, 0),
        ({"inputTokens": 2.0, "costUsd": 0}, {"inputTokens": 2, "costUsd": 0}, 0),
    ],
)
def test_usage_is_checked_and_bad_usage_is_ignored_with_a_note(usage, kept, noted):
    got, notes = check_usage(usage)
    assert got == kept and len(notes) == noted
    answer = verdict(200, JSON, json.dumps({"output": "ok", "usage": usage}).encode())
    assert answer == Succeeded("ok", kept, notes)  # a bad usage never fails the run


RESULTS = [
    ({"async": True}, Accepted()),
    ({"rateLimited": True}, Failed(C.RATE_LIMITED, "the agent is rate limited", None)),
    ({"rateLimited": True, "retryAfterSeconds": 12}, Failed(C.RATE_LIMITED, "the agent is rate limited", 12.0)),
    ({"rateLimited": True, "retryAfterSeconds": 9999}, Failed(C.RATE_LIMITED, "the agent is rate limited", 600.0)),
    ({"output": [1], "usage": {"outputTokens": 9}}, Succeeded([1], {"outputTokens": 9})),
    ({"ok": True}, Succeeded({"ok": True})),
    ({"async": "yes"}, Succeeded({"async": "yes"})),
    ("text", Succeeded("text")),
    (None, Succeeded(None)),
    ([1, 2], Succeeded([1, 2])),
]


@pytest.mark.parametrize(("result", "expected"), RESULTS)
def test_the_result_table_of_lambda_agents(result, expected):
    assert classify_result(result, now=NOW, deadline=DEADLINE) == expected


def test_retry_after_forms():
    assert retry_after_seconds(None, NOW) is None
    assert retry_after_seconds("garbage", NOW) is None
    assert retry_after_seconds("12", NOW) == 12.0
    assert retry_after_seconds(HTTP_DATE, NOW) == 120.0
    assert retry_after_seconds("Mon, 02 Mar 2026 11:00:00 GMT", NOW) == 0.0  # in the past
    assert retry_after_seconds("900", NOW, NOW + timedelta(seconds=30)) == 30.0
