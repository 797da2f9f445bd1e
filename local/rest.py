"""The REST API: the Chalice app behind ``chalice.local.LocalGateway``, on Starlette.

Every request becomes the API Gateway proxy event Chalice builds locally and is
handled in a worker thread, so a slow request never blocks the others.
Chalice keeps ``app.current_request`` (and ``app.lambda_context``) on the app
object, which is one request at a time in Lambda but shared between threads
here: ``make_thread_safe`` turns both into per-thread attributes.
"""
from __future__ import annotations

import base64
import logging
import threading

from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException
from chalice.test import Client, TestHTTPClient
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chalicelib.api.routing_errors import not_found_json
from chalicelib.errors import PayloadTooLarge

log = logging.getLogger("local.rest")

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


class RouteNotFound(LocalGatewayException):
    """No route matches the path: the JSON 404 the deployed stack's Gateway Responses send."""

    CODE = 404

    def __init__(self) -> None:
        super().__init__({"Content-Type": "application/json"}, not_found_json())


class JsonLocalGateway(LocalGateway):
    """Chalice's LocalGateway, but an unknown path answers our JSON 404 instead of API Gateway's
    bare 403, which quotes the request's Authorization header back."""

    def _generate_lambda_event(self, method, path, headers, body):
        try:
            return super()._generate_lambda_event(method, path, headers, body)
        except ValueError:
            raise RouteNotFound() from None


class LocalClient(Client):
    """``chalice.test.Client`` over :class:`JsonLocalGateway`: the test twin of ``make run``'s REST API."""

    @property
    def http(self) -> TestHTTPClient:
        if self._http_client is None:
            client = TestHTTPClient(self._app, self._chalice_config)
            client._local_gateway = JsonLocalGateway(self._app, self._chalice_config)
            self._http_client = client
        return self._http_client


class _PerThread(threading.local):
    current_request = None
    lambda_context = None


def make_thread_safe(app) -> None:
    """Give ``app`` per-thread ``current_request`` and ``lambda_context`` (idempotent)."""
    base = type(app)
    if getattr(base, "_local_per_thread", False):
        return
    state = _PerThread()

    def attr(name: str) -> property:
        return property(lambda self: getattr(state, name), lambda self, value: setattr(state, name, value))

    cls = type(base.__name__, (base,), {
        "_local_per_thread": True,
        "current_request": attr("current_request"),
        "lambda_context": attr("lambda_context"),
    })
    for name in ("current_request", "lambda_context"):
        app.__dict__.pop(name, None)
    app.__class__ = cls


def rest_app(chalice_app, *, stage: str = "api") -> Starlette:
    make_thread_safe(chalice_app)
    gateway = JsonLocalGateway(
        chalice_app,
        Config.create(chalice_stage=stage, app_name=chalice_app.app_name, lambda_timeout=60, lambda_memory_size=512),
    )

    def call(method: str, path: str, headers: dict, body: bytes | None) -> tuple[int, list, bytes]:
        try:
            response = gateway.handle_request(method=method, path=path, headers=headers, body=body)
        except LocalGatewayException as exc:
            hdrs = [(k, str(v)) for k, v in (exc.headers or {}).items()]
            return exc.CODE, hdrs, exc.body or b""
        status = int(response["statusCode"])
        out: list[tuple[str, str]] = []
        for k, v in (response.get("headers") or {}).items():
            out.append((k, str(v)))
        for k, values in (response.get("multiValueHeaders") or {}).items():
            out += [(k, str(v)) for v in values]
        raw = response.get("body")
        if raw is None:
            data = b""
        elif response.get("isBase64Encoded"):
            data = base64.b64decode(raw)
        else:
            data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        return status, out, data

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            too_large = PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")
            return JSONResponse(too_large.to_body(), status_code=too_large.status_code)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1")
        if request.url.query:
            path += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items()}
        status, hdrs, data = await run_in_threadpool(call, request.method, path, headers, body or None)
        response = Response(data if request.method != "HEAD" else b"", status_code=status)
        names = {k.lower() for k, _ in hdrs}
        for k, v in hdrs:
            if k.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            response.headers.append(k, v)
        if "content-type" not in names and data:
            response.headers["content-type"] = "application/json"
        return response

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)])
