"""Routes are reachable at <base>/api/... in AWS too: published without the prefix under the stage `api`."""
from __future__ import annotations

import json

import pytest

from chalicelib.api import gateway


def proxy_event(published: str, method: str = "GET", *, request_id: str = "req-1") -> dict:
    """An API Gateway REST proxy event as Lambda receives it (stage `api`)."""
    return {
        "resource": published,
        "path": published,
        "httpMethod": method,
        "headers": {"Accept": "application/json"},
        "multiValueHeaders": {"Accept": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": published,
            "httpMethod": method,
            "path": f"/{gateway.STAGE_NAME}{published}",
            "stage": gateway.STAGE_NAME,
            "requestId": request_id,
        },
    }


def test_published_paths_drop_the_prefix_once():
    assert gateway.STAGE_NAME == "api"
    assert gateway.published_path("/api/health") == "/health"
    assert gateway.published_path("/api/agents/{agent_id}") == "/agents/{agent_id}"
    assert gateway.published_path("/api") == "/"
    assert gateway.published_path("/dashboard") == "/dashboard"
    assert gateway.published_path("/apix") == "/apix"


def test_two_routes_may_not_share_a_published_path():
    gateway.check_routes(["/api/health", "/dashboard"])
    with pytest.raises(ValueError, match="/health"):
        gateway.check_routes(["/api/health", "/health"])


def test_the_event_is_mapped_back_to_the_app_route_without_changing_the_original():
    routes = {"/api/health": {}, "/dashboard": {}}
    event = proxy_event("/health")
    mapped = gateway.to_app_route(event, routes)
    assert mapped["requestContext"]["resourcePath"] == "/api/health"
    assert event["requestContext"]["resourcePath"] == "/health"
    assert gateway.to_app_route(proxy_event("/dashboard"), routes)["requestContext"]["resourcePath"] == "/dashboard"
    assert gateway.to_app_route({"no": "context"}, routes) == {"no": "context"}


def test_the_rest_handler_serves_the_published_routes():
    from app import app, rest_handler

    health = rest_handler(proxy_event("/health"), None)
    assert health["statusCode"] == 200 and json.loads(health["body"]) == {"status": "ok"}
    spec = rest_handler(proxy_event("/openapi.json"), None)
    assert spec["statusCode"] == 200 and "/api/health" in json.loads(spec["body"])["paths"]
    gateway.check_routes(app.routes)  # what the stack publishes is unambiguous
