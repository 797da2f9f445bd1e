"""The answers for requests no route takes: a wrong method on a known path, an unknown path.

Chalice has no catch-all (ANY or greedy) routes, and left alone it answers a wrong method
with its own ``{"Code": "MethodNotAllowedError"}``. :func:`add_method_not_allowed`, called
once every route is registered, gives each path a view for the methods it lacks that
answers our error shape, 405 ``METHOD_NOT_ALLOWED`` with an ``Allow`` header. In AWS,
API Gateway then only answers by itself for a path that does not exist at all, which
its Gateway Responses turn into :data:`NOT_FOUND_BODY`; the local gateway does the same.

Neither answer quotes anything the caller sent but the method: never a header, so never
a bearer token.
"""
from __future__ import annotations

import json

from chalice import Chalice, Response

from chalicelib.errors import MethodNotAllowed, NotFound

# The methods a route may be missing. OPTIONS stays with API Gateway's CORS preflight.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
NOT_FOUND_MESSAGE = "no such route or method"
NOT_FOUND_BODY: dict = NotFound(NOT_FOUND_MESSAGE).to_body()


def not_found_json() -> bytes:
    """The JSON 404 for a path no route matches (what the stack's Gateway Responses send)."""
    return json.dumps(NOT_FOUND_BODY).encode()


def allowed_methods(app: Chalice, path: str) -> list[str]:
    """The methods ``path``'s own views answer, in a fixed order (the added 405 views excluded)."""
    views = app.routes.get(path, {})
    return [m for m in (*METHODS, "OPTIONS") if m in views and not _is_ours(views[m].view_function)]


def add_method_not_allowed(app: Chalice) -> None:
    """Give every registered path a 405 view for each of :data:`METHODS` it lacks (idempotent)."""
    for path in list(app.routes):
        allow = allowed_methods(app, path)
        missing = [m for m in METHODS if m not in app.routes[path]]
        if not allow or not missing:
            continue
        app.route(path, methods=missing, content_types=["*/*"], name="method_not_allowed")(
            _view(app, path, ", ".join(allow))
        )


def _view(app: Chalice, path: str, allow: str):
    def method_not_allowed(**_params: str) -> Response:
        request = app.current_request
        method = request.method if request is not None else "this method"
        error = MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {allow}")
        return Response(body=error.to_body(), status_code=error.status_code,
                        headers={"Allow": allow, "Content-Type": "application/json"})

    method_not_allowed._method_not_allowed = True  # type: ignore[attr-defined]
    return method_not_allowed


def _is_ours(view) -> bool:
    return bool(getattr(view, "_method_not_allowed", False))
