"""Where the REST routes are reachable: ``<base>/api/health`` locally and in AWS alike.

The app writes its routes with the prefix (``/api/health``): that is what
``make run`` serves at ``http://127.0.0.1:8000/api/health``. In AWS a REST API's
URL always starts with its stage name, so the stage is named ``api``
(``STAGE_NAME``) and the stack publishes each route *without* the prefix: the
route is reachable at ``https://<api>.execute-api.<region>.amazonaws.com/api/health``,
never ``/api/api/health``. API Gateway then reports the published resource
(``/health``) in the event; :func:`to_app_route` puts the prefix back before
Chalice looks the route up (the REST function's handler in AWS is
``app.rest_handler``).

Routes outside the prefix (none today) are published as they are, under the stage.
"""
from __future__ import annotations

from typing import Any, Container, Iterable, Mapping

ROUTE_PREFIX = "/api"
STAGE_NAME = ROUTE_PREFIX.lstrip("/")


def published_path(app_path: str) -> str:
    """The resource path API Gateway serves an app route under (the stage name comes before it)."""
    if app_path == ROUTE_PREFIX:
        return "/"
    if app_path.startswith(ROUTE_PREFIX + "/"):
        return app_path[len(ROUTE_PREFIX):]
    return app_path


def check_routes(app_paths: Iterable[str]) -> None:
    """Raise ``ValueError`` if two app routes would be published under the same path."""
    seen: dict[str, str] = {}
    for path in app_paths:
        published = published_path(path)
        if published in seen and seen[published] != path:
            raise ValueError(f"routes {seen[published]!r} and {path!r} would both be published as {published!r}")
        seen[published] = path


def app_path(published: str, routes: Container[str]) -> str:
    """The app route a published resource path belongs to."""
    prefixed = ROUTE_PREFIX + ("" if published == "/" else published)
    return prefixed if prefixed in routes else published


def to_app_route(event: Mapping[str, Any], routes: Container[str]) -> Mapping[str, Any]:
    """The API Gateway proxy event with its resource path mapped back to the app's route (a copy)."""
    context = event.get("requestContext")
    if not isinstance(context, Mapping) or not isinstance(context.get("resourcePath"), str):
        return event
    path = app_path(context["resourcePath"], routes)
    return {**event, "resource": path, "requestContext": {**context, "resourcePath": path}}
