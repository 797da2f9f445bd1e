"""One error shape for requests no view takes: unknown paths, wrong methods, unreadable or oversized
bodies; and no answer ever carries the caller's bearer token back.

Through the test client (the functional fixtures) and through the local REST server that ``make run`` serves.
"""
from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from chalicelib.api.auth import issue
from chalicelib.api.routing_errors import METHODS
from local.rest import rest_app
from tests.functional.conftest import SECRET

UNKNOWN = ["/api/nope", "/nope", "/api", "/api/agents/a1/nope", "/api/agents/a1/sessions/s1/cancel/now", "/"]


def _routes():
    from app import app

    return app, {path: sorted(m for m, entry in views.items() if not getattr(entry.view_function, "_method_not_allowed", False))
                 for path, views in app.routes.items()}


def _wrong_methods():
    _, routes = _routes()
    return [(m, path, allowed) for path, allowed in routes.items() for m in METHODS if m not in allowed]


def _concrete(path: str) -> str:
    return path.replace("{agent_id}", "a1").replace("{session_id}", "s1")


@pytest.fixture
def marked_token():
    # A real, valid token with a marker in its claims: if any answer quotes the header, the marker shows.
    return issue("tenant-leak-marker", SECRET)


def _assert_no_token(resp, token: str):
    text = (resp.body or b"").decode("utf-8", "replace") if isinstance(resp.body, bytes) else str(resp.body)
    headers = json.dumps(dict(resp.headers))
    assert token not in text and token not in headers
    assert "Bearer" not in text and "Bearer" not in headers


def test_unknown_paths_answer_our_json_404_and_never_the_token(api, marked_token):
    api.token = marked_token
    for path in UNKNOWN:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            r = api.call(method, path, {"x": 1})
            assert r.status_code == 404, (method, path, r.status_code, r.body)
            assert r.json == {"code": "NOT_FOUND", "message": "no such route or method"}
            assert r.headers["Content-Type"] == "application/json"
            _assert_no_token(r, marked_token)


def test_unknown_paths_without_a_token_answer_the_same_404(anon_api):
    r = anon_api.get("/api/nope")
    assert r.status_code == 404 and r.json["code"] == "NOT_FOUND"


def test_a_wrong_method_on_a_known_path_is_a_405_with_allow(api, marked_token):
    api.token = marked_token
    wrong = _wrong_methods()
    assert len(wrong) > 50  # every path, every method it lacks
    for method, path, allowed in wrong:
        r = api.call(method, _concrete(path), {"x": 1})
        assert r.status_code == 405, (method, path, r.status_code, r.body)
        assert sorted(m.strip() for m in r.headers["Allow"].split(",")) == allowed, (method, path)
        if method != "HEAD":
            assert r.json["code"] == "METHOD_NOT_ALLOWED"
            assert method in r.json["message"] and r.headers["Allow"] in r.json["message"]
        _assert_no_token(r, marked_token)


def test_every_path_answers_every_method_with_a_view_and_the_known_ones_are_untouched(api):
    app, routes = _routes()
    for path, views in app.routes.items():
        assert set(METHODS) <= set(views), path
    assert routes["/api/agents"] == ["GET", "POST"]
    assert routes["/api/agents/{agent_id}"] == ["DELETE", "GET", "PATCH"]
    assert api.get("/api/agents").status_code == 200  # the real views still answer


def test_a_wrong_method_without_a_token_is_still_405_not_401(anon_api):
    r = anon_api.call("PUT", "/api/agents", {})
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"


def test_unreadable_json_is_a_400_in_our_shape(api):
    for raw in ["{", "not json", '{"name": }', "[1, 2", "\ufeff{}x"]:
        r = api.call("POST", "/api/agents", raw=raw)
        assert r.status_code == 400 and r.json["code"] == "MALFORMED_REQUEST" and "JSON" in r.json["message"], raw


def test_a_body_over_one_megabyte_is_a_413_and_one_just_under_is_read(api):
    filler = "x" * (1024 * 1024)
    r = api.call("POST", "/api/agents", raw=json.dumps({"name": "big", "kind": "echo", "description": filler}))
    assert r.status_code == 413 and r.json["code"] == "PAYLOAD_TOO_LARGE" and "1 MB" in r.json["message"]
    under = json.dumps({"name": "big", "kind": "echo", "description": "x" * (1024 * 1024 - 100)})
    r = api.call("POST", "/api/agents", raw=under)
    assert r.status_code == 400 and r.json["field"] == "description"  # read and validated: too long a description


# --- the local REST server (make run) ------------------------------------------------------
@pytest.fixture
def rest(system):
    from app import app

    with TestClient(rest_app(app)) as client:
        yield client


def test_local_server_answers_unknown_paths_wrong_methods_and_huge_bodies_in_our_shape(rest, marked_token):
    auth = {"Authorization": f"Bearer {marked_token}"}
    answers = []
    for method, path in [("GET", "/api/nope"), ("DELETE", "/nope/deeper"), ("PUT", "/api/agents"),
                         ("POST", "/api/health"), ("GET", "/api/agents/a1/run")]:
        r = rest.request(method, path, headers=auth)
        answers.append(r)
        assert r.headers["content-type"].startswith("application/json")
        assert set(r.json()) == {"code", "message"}
    assert [r.status_code for r in answers] == [404, 404, 405, 405, 405]
    assert [r.json()["code"] for r in answers] == ["NOT_FOUND"] * 2 + ["METHOD_NOT_ALLOWED"] * 3
    assert answers[2].headers["allow"] == "GET, POST" and answers[4].headers["allow"] == "POST"
    huge = rest.post("/api/agents", content=b"x" * (10 * 1024 * 1024 + 1), headers=auth)
    assert huge.status_code == 413 and huge.json()["code"] == "PAYLOAD_TOO_LARGE"
    answers.append(huge)
    for r in answers:
        assert marked_token not in r.text and marked_token not in json.dumps(dict(r.headers))
    assert rest.get("/api/health").json() == {"status": "ok"}
