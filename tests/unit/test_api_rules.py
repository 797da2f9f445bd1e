"""Validation, auth and settings: pure, no moto."""
from __future__ import annotations

import dataclasses
import time

import jwt
import pytest

from chalicelib.api import schemas
from chalicelib.api.auth import bearer, issue, verify
from chalicelib.api.openapi import openapi_document
from chalicelib.api.validation import parse_datetime, parse_json_body, query_int, validate
from chalicelib.errors import ConfigError, Forbidden, MalformedRequest, Unauthorized, ValidationError
from chalicelib.settings import Settings


# --- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("body,field", [
    ({"kind": "echo"}, "name"),
    ({"name": "", "kind": "echo"}, "name"),
    ({"name": "x" * 201, "kind": "echo"}, "name"),
    ({"name": 5, "kind": "echo"}, "name"),
    ({"name": "a", "kind": "nope"}, "kind"),
    ({"name": "a", "kind": "echo", "config": []}, "config"),
    ({"name": "a", "kind": "echo", "config": {"x": "y" * 33000}}, "config"),
    ({"name": "a", "kind": "echo", "timeoutSeconds": 0}, "timeoutSeconds"),
    ({"name": "a", "kind": "echo", "timeoutSeconds": 86401}, "timeoutSeconds"),  # 901..86400: per kind, in the service
    ({"name": "a", "kind": "echo", "timeoutSeconds": 1.5}, "timeoutSeconds"),
    ({"name": "a", "kind": "echo", "timeoutSeconds": True}, "timeoutSeconds"),
    ({"name": "a", "kind": "echo", "maxRetries": 11}, "maxRetries"),
    ({"name": "a", "kind": "echo", "maxRetries": -1}, "maxRetries"),
    ({"name": "a", "kind": "echo", "color": "red"}, "color"),
])
def test_agent_bodies_are_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as e:
        validate(body, schemas.AGENT_CREATE)
    assert e.value.field == field and field in e.value.message and e.value.status_code == 400


def test_valid_agent_body_passes_and_integral_floats_become_ints():
    out = validate({"name": "a", "kind": "echo", "timeoutSeconds": 30.0}, schemas.AGENT_CREATE)
    assert out["timeoutSeconds"] == 30 and isinstance(out["timeoutSeconds"], int)


@pytest.mark.parametrize("body,field", [
    ({"cronExpression": "* * * * *", "priority": "URGENT"}, "priority"),
    ({"cronExpression": "* * * * *", "enabled": "yes"}, "enabled"),
    ({"cronExpression": "* * * * *", "startAt": "tomorrow"}, "startAt"),
    ({"cronExpression": "* * * * *", "startAt": "2026-01-01T00:00:00"}, "startAt"),
    ({"cronExpression": "* * * * *", "jitterSeconds": 4000}, "jitterSeconds"),
    ({"cronExpression": "* * * * *", "overlapPolicy": "MAYBE"}, "overlapPolicy"),
])
def test_schedule_bodies_are_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as e:
        validate(body, schemas.SCHEDULE_PUT)
    assert e.value.field == field


@pytest.mark.parametrize("body,field", [
    ({}, "expression"),
    ({"expression": "* * * * *", "cronExpression": "* * * * *"}, "expression"),
])
def test_a_schedule_body_takes_exactly_one_expression(body, field):
    from chalicelib.services.agents import expression_field

    with pytest.raises(ValidationError) as e:
        expression_field(body)
    assert e.value.field == field


def test_either_expression_field_is_accepted_and_named():
    from chalicelib.services.agents import expression_field

    assert expression_field({"expression": "rate(5 minutes)"}) == ("expression", "rate(5 minutes)")
    assert expression_field({"cronExpression": "@daily"}, "operations[0].schedule.") == (
        "operations[0].schedule.cronExpression", "@daily")


def test_nested_fields_are_named_with_their_path():
    with pytest.raises(ValidationError) as e:
        validate({"operations": [{"agentId": "a", "action": "schedule"}, {"agentId": "b", "action": "fly"}]}, schemas.BULK)
    assert e.value.field == "operations[1].action"


@pytest.mark.parametrize("raw", [b"{", b"nan", b"NaN", b"[1,", b"\xff\xfe", b'{"a": Infinity}', b'{"a": "\\ud800"}',
                                 b'{"a": 1e400}', b"[" * 100000])
def test_malformed_json_is_a_400(raw):
    with pytest.raises((MalformedRequest, ValidationError)) as e:
        parse_json_body(raw)
    assert e.value.status_code == 400


def test_empty_body_is_required_where_needed():
    with pytest.raises(MalformedRequest):
        parse_json_body(b"")
    assert parse_json_body(b"", required=False) == {}


def test_datetimes_need_an_offset():
    assert parse_datetime("2026-01-01T00:00:00Z", "from").utcoffset().total_seconds() == 0
    with pytest.raises(ValidationError):
        parse_datetime("2026-01-01T00:00:00", "from")


@pytest.mark.parametrize("raw", ["0", "101", "x", "1.5", ""])
def test_limit_bounds(raw):
    with pytest.raises(ValidationError) as e:
        query_int({"limit": raw}, "limit", 50, 1, 100)
    assert e.value.field == "limit"


# --- auth ------------------------------------------------------------------------------------
SECRET = "s" * 32


def test_a_good_token_gives_the_tenant_and_scopes():
    p = verify(issue("team-1", SECRET, scopes="admin read"), SECRET)
    assert p.tenant_id == "team-1" and p.admin
    assert not verify(issue("team-1", SECRET), SECRET).admin


@pytest.mark.parametrize("token", [
    None,
    "",
    "garbage",
    jwt.encode({"sub": "t", "exp": int(time.time()) + 60}, "other-secret", algorithm="HS256"),
    jwt.encode({"sub": "t", "exp": int(time.time()) - 600}, SECRET, algorithm="HS256"),
    jwt.encode({"sub": "t"}, SECRET, algorithm="HS256"),
    jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
    jwt.encode({"sub": "", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
    jwt.encode({"sub": "t", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512"),
], ids=["none", "empty", "garbage", "wrong-secret", "expired", "no-exp", "no-sub", "empty-sub", "hs512"])
def test_bad_tokens_are_401(token):
    with pytest.raises(Unauthorized):
        verify(token, SECRET)


def test_unsigned_tokens_are_refused():
    token = jwt.encode({"sub": "t", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        verify(token, SECRET)


def test_admin_required():
    with pytest.raises(Forbidden):
        verify(issue("t", SECRET), SECRET).require_admin()


def test_bearer_header_parsing():
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    assert bearer({}) is None
    with pytest.raises(Unauthorized):
        bearer({"Authorization": "Basic abc"})


# --- settings ---------------------------------------------------------------------------------
def test_defaults_match_the_contract():
    s = Settings.from_env({})
    assert (s.api_port, s.ws_port, s.jwt_secret, s.max_concurrent_agents, s.max_retries) == (8000, 8001, "local-dev-secret", 5, 3)
    assert (s.backoff_base_seconds, s.backoff_max_seconds, s.alert_after_failures, s.tick_seconds, s.session_retention_days) == (1, 300, 3, 60, 30)


@pytest.mark.parametrize("name,value", [
    ("SCHEDULER_API_PORT", "http"),
    ("SCHEDULER_WS_PORT", "70000"),
    ("SCHEDULER_MAX_CONCURRENT_AGENTS", "0"),
    ("SCHEDULER_MAX_RETRIES", "11"),
    ("SCHEDULER_BACKOFF_BASE_SECONDS", "-1"),
    ("SCHEDULER_BACKOFF_MAX_SECONDS", "nan"),
    ("SCHEDULER_ALERT_AFTER_FAILURES", "x"),
    ("SCHEDULER_TICK_SECONDS", "0"),
    ("SCHEDULER_SESSION_RETENTION_DAYS", "1.5"),
])
def test_bad_settings_stop_startup_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as e:
        Settings.from_env({name: value})
    assert name in str(e.value)


def test_the_secret_is_required_in_aws():
    with pytest.raises(ConfigError) as e:
        Settings.from_env({"SCHEDULER_ENV": "aws"})
    assert "SCHEDULER_JWT_SECRET" in str(e.value)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings.from_env({}).max_retries = 9


def test_openapi_document_lists_every_route():
    doc = openapi_document()
    paths = set(doc["paths"])
    for p in ["/api/health", "/api/agents", "/api/agents/{agent_id}", "/api/agents/{agent_id}/schedule",
              "/api/agents/{agent_id}/run", "/api/agents/{agent_id}/sessions", "/api/agents/{agent_id}/sessions/{session_id}",
              "/api/agents/{agent_id}/sessions/{session_id}/cancel", "/api/scheduler/status", "/api/scheduler/pause",
              "/api/scheduler/resume", "/api/schedules/validate", "/api/schedules/bulk", "/api/schedules/conflicts",
              "/api/agents/{agent_id}/fires", "/api/dlq", "/api/dlq/redrive", "/api/openapi.json",
              "/api/agents/{agent_id}/backfill", "/api/agents/{agent_id}/schedule/history"]:
        assert p in paths
    from openapi_spec_validator import validate as validate_spec

    validate_spec(doc)
    schedule = doc["components"]["schemas"]["Schedule"]["properties"]
    assert {"expression", "cronExpression", "excludeDates", "version"} <= set(schedule)
