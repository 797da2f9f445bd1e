"""The OpenAPI 3 document, built from the same schemas the API validates with."""
from __future__ import annotations

import copy
import functools

from chalicelib.api import schemas as S


def _clean(schema: dict) -> dict:
    """Our validator's dialect to OpenAPI 3.1 (x- keys kept as extensions)."""
    return copy.deepcopy(schema)


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": _clean(schema)}}}


def _resp(code: str, desc: str, schema: dict | None = None) -> dict:
    r = {"description": desc}
    if schema is not None:
        r.update(_json(schema))
    return {code: r}


ERR = {"$ref": "#/components/schemas/Error"}
AGENT_ID = {"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 100}}
SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 100}}
LIMIT = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 100}}
TOKEN = {"name": "nextToken", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 2048}}


def _errors(*codes: str) -> dict:
    words = {"400": "bad input (the message names the field)", "401": "missing or invalid token",
             "403": "needs the admin scope", "404": "not found (or another tenant's)", "409": "conflict"}
    out = {}
    for c in codes:
        out.update(_resp(c, words[c], ERR))
    return out


def _op(summary: str, ok: dict, *, params=(), body: dict | None = None, errors=("400", "401", "404"), public=False, body_required=True) -> dict:
    op = {"summary": summary, "parameters": list(params), "responses": {**ok, **_errors(*errors)}}
    if body is not None:
        op["requestBody"] = {"required": body_required, **_json(body)}
    if public:
        op["security"] = []
    return op


def _page(item: dict) -> dict:
    return {"type": "object", "properties": {"items": {"type": "array", "items": item}, "nextToken": {"type": ["string", "null"]}}}


STATUS = {
    "type": "object",
    "properties": {
        "paused": {"type": "boolean"},
        "maxConcurrentAgents": {"type": "integer"},
        "running": {"type": "integer"},
        "queued": {"type": "integer"},
        "pending": {"type": "object", "additionalProperties": {"type": "integer"}},
        "lastTickAt": {"type": ["string", "null"], "format": "date-time"},
        "dlqDepth": {"type": "integer"},
    },
}
DLQ_ITEM = {
    "type": "object",
    "properties": {
        "sessionId": {"type": "string"}, "agentId": {"type": "string"}, "error": {"type": ["object", "null"]},
        "attempt": {"type": "integer"}, "failedAt": {"type": ["string", "null"], "format": "date-time"},
    },
}
CONFLICT = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["SELF_OVERLAP", "CAPACITY", "HOT_MINUTE"]},
        "at": {"type": "string", "format": "date-time"},
        "agentIds": {"type": "array", "items": {"type": "string"}},
        "message": {"type": "string"},
        "suggestion": {},
    },
}
FIRE = {
    "type": "object",
    "properties": {
        "fireTime": {"type": "string", "format": "date-time"}, "outcome": {"type": "string"},
        "sessionId": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]},
    },
}
HISTORY_ITEM = {
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "changedAt": {"type": "string", "format": "date-time"},
        "changedBy": {"type": "string", "description": "the token's sub (a tenant), or system"},
        "action": {"type": "string", "enum": ["CREATED", "UPDATED", "ENABLED", "DISABLED", "DELETED"]},
        "schedule": {"type": "object", "description": "the schedule after the change (before it, for DELETED)"},
    },
}
BACKFILL_OUT = {
    "type": "object",
    "properties": {
        "created": {"type": "integer"},
        "skipped": {"type": "integer", "description": "fires in the window that already had their run"},
        "sessionIds": {"type": "array", "items": {"type": "string"}},
    },
}
EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "object"}, "timestamp": {"type": "string", "format": "date-time"},
                   "seq": {"type": "integer"}, "id": {"type": "string"}},
}
FROM = {"name": "from", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict:
    agent, session, schedule = S.AGENT_OUT, S.SESSION_OUT, S.SCHEDULE_OUT
    paths = {
        "/api/health": {"get": _op("Liveness", _resp("200", "ok", {"type": "object", "properties": {"status": {"type": "string"}}}), errors=(), public=True)},
        "/api/openapi.json": {"get": _op("This document", _resp("200", "OpenAPI 3 document", {"type": "object"}), errors=(), public=True)},
        "/api/agents": {
            "post": _op("Create an agent", _resp("201", "the agent", agent), body=S.AGENT_CREATE, errors=("400", "401")),
            "get": _op("List your agents", _resp("200", "a page of agents", _page(agent)), params=[LIMIT, TOKEN], errors=("400", "401")),
        },
        "/api/agents/{agent_id}": {
            "get": _op("Read an agent", _resp("200", "the agent", agent), params=[AGENT_ID], errors=("401", "404")),
            "patch": _op("Update an agent (partial)", _resp("200", "the agent", agent), params=[AGENT_ID], body=S.AGENT_PATCH),
            "delete": _op("Delete an agent and its schedule", _resp("204", "deleted"), params=[AGENT_ID], errors=("401", "404")),
        },
        "/api/agents/{agent_id}/schedule": {
            "post": _op("Create or replace the schedule", _resp("200", "the schedule, with warnings and conflicts", schedule), params=[AGENT_ID], body=S.SCHEDULE_PUT),
            "get": _op("Read the schedule with its next runs", _resp("200", "the schedule", schedule), params=[AGENT_ID], errors=("401", "404")),
            "delete": _op("Remove the schedule (the agent stays)", _resp("204", "removed"), params=[AGENT_ID], errors=("401", "404")),
        },
        "/api/agents/{agent_id}/schedule/history": {
            "get": _op("Every change of the schedule, newest first", _resp("200", "a page of versions", _page(HISTORY_ITEM)),
                       params=[AGENT_ID, LIMIT, TOKEN]),
        },
        "/api/agents/{agent_id}/backfill": {
            "post": _op("Run the fires of a past window that never ran (trigger BACKFILL)",
                        _resp("202", "the runs created", BACKFILL_OUT), params=[AGENT_ID], body=S.BACKFILL),
        },
        "/api/agents/{agent_id}/run": {
            "post": _op("Run now", _resp("202", "queued", {"type": "object", "properties": {"sessionId": {"type": "string"}, "status": {"type": "string"}}}), params=[AGENT_ID], body=S.RUN_NOW, body_required=False),
        },
        "/api/agents/{agent_id}/sessions": {
            "get": _op("Run history, newest first", _resp("200", "a page of sessions", _page(session)),
                       params=[AGENT_ID, LIMIT, TOKEN, {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": [s for s in S.SESSION_OUT["properties"]["status"]["enum"]]}}]),
        },
        "/api/agents/{agent_id}/sessions/{session_id}": {
            "get": _op("One session", _resp("200", "the session", session), params=[AGENT_ID, SESSION_ID], errors=("401", "404")),
        },
        "/api/agents/{agent_id}/sessions/{session_id}/cancel": {
            "post": _op("Cancel a run", _resp("202", "cancelled or cancelling", session), params=[AGENT_ID, SESSION_ID], errors=("401", "404", "409")),
        },
        "/api/agents/{agent_id}/fires": {
            "get": _op("Every fire time in a window and what became of it", _resp("200", "the fire ledger", {"type": "object", "properties": {"items": {"type": "array", "items": FIRE}}}),
                       params=[AGENT_ID, FROM, {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}]),
        },
        "/api/scheduler/status": {"get": _op("Scheduler status", _resp("200", "status", STATUS), errors=("401",))},
        "/api/scheduler/pause": {"post": _op("Pause admission (admin)", _resp("200", "status", STATUS), errors=("401", "403"))},
        "/api/scheduler/resume": {"post": _op("Resume admission (admin)", _resp("200", "status", STATUS), errors=("401", "403"))},
        "/api/schedules/validate": {
            "post": _op("Validate an expression and list its next runs",
                        _resp("200", "valid", {"type": "object", "properties": {"valid": {"type": "boolean"}, "expression": {"type": "string"}, "cronExpression": {"type": "string"}, "nextRuns": {"type": "array", "items": {"type": "string"}}, "warnings": {"type": "array", "items": {"type": "string"}}}}),
                        body=S.VALIDATE, errors=("400", "401")),
        },
        "/api/schedules/bulk": {
            "post": _op("Apply many schedule operations", _resp("200", "one result per operation, in order", {"type": "object", "properties": {"results": {"type": "array", "items": {"type": "object"}}}}),
                        body=S.BULK, errors=("400", "401")),
        },
        "/api/schedules/conflicts": {
            "get": _op("Conflicts across your schedules", _resp("200", "conflicts", {"type": "object", "properties": {"conflicts": {"type": "array", "items": CONFLICT}}}),
                       params=[FROM, {"name": "hours", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 168}}], errors=("400", "401")),
        },
        "/api/dlq": {"get": _op("Dead runs you can see", _resp("200", "a page of dead runs", _page(DLQ_ITEM)), params=[LIMIT, TOKEN], errors=("400", "401"))},
        "/api/dlq/redrive": {
            "post": _op("Give dead runs a new attempt", _resp("202", "how many", {"type": "object", "properties": {"redriven": {"type": "integer"}}}), body=S.REDRIVE, errors=("400", "401"), body_required=False),
        },
        # The event stream (events as sent over WebSocket, each with seq and id) and the dashboard.
        "/api/events": {
            "get": _op("Your retained events after a seq, in seq order", _resp("200", "a page of events", {"type": "object", "properties": {"items": {"type": "array", "items": EVENT}, "nextSince": {"type": "integer"}, "oldestSeq": {"type": "integer", "description": "present when events after since have expired"}}}),
                       params=[{"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                               {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}}], errors=("400", "401")),
        },
        "/api/events/ticket": {
            "post": _op("A single-use WebSocket ticket (60 s) for ?ticket=", _resp("200", "the ticket", {"type": "object", "properties": {"ticket": {"type": "string"}, "expiresAt": {"type": "string", "format": "date-time"}, "expiresInSeconds": {"type": "integer"}, "url": {"type": "string"}}}), errors=("401",), body_required=False),
        },
        "/dashboard": {"get": {"summary": "The dashboard (HTML)", "security": [], "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent Scheduler", "version": "1.0.0",
                 "description": "Serverless scheduler for AI agents: cron in any zone, priorities, a concurrency cap, retries, DLQ, run history."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": S.ERROR, "Agent": agent, "Session": session, "Schedule": schedule},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
