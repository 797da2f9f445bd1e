"""``Idempotency-Key`` on creating routes: the request's fingerprint and the replayed answer.

The rules are in chalicelib/domain/idempotency.py, the records in
chalicelib/adapters/idempotency.py; this module reads them off the HTTP request.
"""
from __future__ import annotations

from typing import Any, Callable

from chalicelib.domain.idempotency import REPLAYED_HEADER, fingerprint, header_key


def request_path(request) -> str:
    """The concrete path the request named (``/api/agents/a-1/run``), as the app routes it,
    the same locally and in AWS."""
    context = request.context or {}
    path = context.get("resourcePath") or context.get("path") or ""
    for name, value in (request.uri_params or {}).items():
        path = path.replace("{" + name + "}", value)
    return path


def answer(container, tenant_id: str, request, body: Any, status: int,
           call: Callable[[], Any]) -> tuple[int, Any, dict[str, str]]:
    """(status, body, extra headers) of a creating request: once per key, replayed after."""
    key = header_key(request.headers)
    if key is None:
        return status, call(), {}
    deadline = getattr(getattr(request, "lambda_context", None), "get_remaining_time_in_millis", None)
    remaining = deadline() if callable(deadline) else None
    fp = fingerprint(request.method, request_path(request), body)
    got = container.idempotency.call(tenant_id, key, fp, lambda: (status, call()), remaining_ms=remaining)
    return got.status, got.body, ({REPLAYED_HEADER: "true"} if got.replayed else {})
