"""The HTTP client: one method per API operation, retries, idempotency keys, errors without the token."""
from __future__ import annotations

import re

import httpx
import pytest

from agent_scheduler.client import ApiError, RetryTransport, SchedulerClient, Unreachable, api_base
from chalicelib.api.openapi import openapi_document

TOKEN = "tok-client-marker"


def _shape(route: str) -> list[str]:
    return ["{}" if re.fullmatch(r"\{[^}]+\}", part) else part for part in route.strip("/").split("/")]


def _covers(client_route: str, doc_route: str) -> bool:
    mine, theirs = _shape(client_route), _shape(doc_route)
    return len(mine) == len(theirs) and all(m == t or m == "{}" for m, t in zip(mine, theirs, strict=True))


def test_every_operation_of_the_openapi_document_has_a_client_method():
    ops = SchedulerClient.operations()
    missing = []
    for path, item in openapi_document()["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method in item:
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            if not any(m == method.upper() and _covers(route, path) for (m, route) in ops):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"no client method for: {missing}"


def recorder(answers):
    seen = []

    def handle(request):
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, handle


def test_base_url_takes_or_adds_api():
    assert api_base("http://h:8000/") == "http://h:8000/api"
    assert api_base("https://x.test/dev/api") == "https://x.test/dev/api"
    with pytest.raises(ValueError):
        api_base("h:8000")


def test_requests_carry_the_token_and_quote_path_parts():
    seen, handle = recorder([httpx.Response(200, json={"id": "a"})])
    with SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(handle)) as c:
        c.get_agent("a/b")
    assert seen[0].url.raw_path == b"/api/agents/a%2Fb" and seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(c)


def test_a_run_is_retried_on_503_with_the_same_idempotency_key():
    sleeps = []
    seen, handle = recorder([httpx.Response(503, headers={"Retry-After": "2"}), httpx.ConnectError("refused"),
                             httpx.Response(202, json={"sessionId": "s", "status": "QUEUED"})])
    c = SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(handle), sleep=sleeps.append)
    assert c.run_agent("ag", input={"x": 1})["sessionId"] == "s"
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1 and len(seen) == 3
    assert sleeps == [2.0, 1.0]  # Retry-After, then the backoff


def test_a_given_idempotency_key_is_sent():
    seen, handle = recorder([httpx.Response(201, json={"id": "a"})])
    SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(handle)).create_agent(
        {"name": "a", "kind": "echo"}, idempotency_key="k-1")
    assert seen[0].headers["Idempotency-Key"] == "k-1"


def test_a_post_without_a_key_is_not_repeated_after_a_5xx_but_after_a_refused_connection():
    seen, handle = recorder([httpx.Response(502)])
    c = SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(handle), sleep=lambda s: None)
    with pytest.raises(ApiError) as err:
        c.redrive(["s1"])
    assert err.value.status == 502 and len(seen) == 1
    seen, handle = recorder([httpx.ConnectError("refused"), httpx.Response(202, json={"redriven": 1})])
    c = SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(handle), sleep=lambda s: None)
    assert c.redrive(["s1"]) == {"redriven": 1} and len(seen) == 2


def test_retries_give_up_with_backoff():
    sleeps = []
    t = RetryTransport(httpx.MockTransport(lambda r: httpx.Response(503)), retries=4, backoff=1, max_backoff=5,
                       sleep=sleeps.append)
    assert httpx.Client(transport=t).get("http://h/api/agents").status_code == 503
    assert sleeps == [1, 2, 4, 5]


def test_no_answer_is_unreachable_without_the_token():
    def refuse(request):
        raise httpx.ConnectError(f"refused {TOKEN}")

    c = SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(refuse), sleep=lambda s: None)
    with pytest.raises(Unreachable) as err:
        c.status()
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("answer,code,message", [
    (httpx.Response(400, json={"code": "VALIDATION_ERROR", "message": "name: too long", "field": "name"}), "VALIDATION_ERROR", "name: too long"),
    (httpx.Response(403, json={"message": f"Authorization=Bearer {TOKEN}"}), "FORBIDDEN", "Authorization=Bearer ***"),
    (httpx.Response(404, text="<html>nope</html>"), "NOT_FOUND", "<html>nope</html>"),
])
def test_errors_carry_code_and_message_never_the_token(answer, code, message):
    c = SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(lambda r: answer))
    with pytest.raises(ApiError) as err:
        c.list_agents()
    assert (err.value.code, err.value.message) == (code, message) and TOKEN not in repr(err.value.body)


def test_paginate_follows_next_token():
    pages = {None: {"items": [1, 2], "nextToken": "t"}, "t": {"items": [3], "nextToken": None}}
    c = SchedulerClient("http://h/api", TOKEN, transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=pages[r.url.params.get("nextToken")])))
    assert list(c.iter_dlq()) == [1, 2, 3]
