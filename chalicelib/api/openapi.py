"""The OpenAPI 3 document, built from the same schemas the API validates with.

Every operation has a unique camelCase ``operationId`` and one tag, and every shape that
more than one route shares (an agent, a schedule, a session, an error, an event, a page)
is a named schema in ``components/schemas`` that the routes reference with ``$ref``, so
a client generated from the document, in any language, gets sensible names.
"""
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
LABEL = {"name": "label", "in": "query", "required": False, "explode": True,
         "schema": {"type": "array", "items": {"type": "string", "maxLength": 320}},
         "description": "key=value: only agents with this label (repeat it: all must hold); a page may hold fewer than limit"}
TOKEN = {"name": "nextToken", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 2048}}


def _errors(*codes: str) -> dict:
    words = {"400": "bad input (the message names the field)", "401": "missing or invalid token",
             "403": "needs the admin scope", "404": "not found (or another tenant's)", "409": "conflict",
             "429": "the agent's daily budget is used up (BUDGET_EXHAUSTED)"}
    out = {}
    for c in codes:
        out.update(_resp(c, words[c], ERR))
    return out


def _op(operation_id: str, tag: str, summary: str, ok: dict, *, params=(), body: dict | None = None,
        errors=("400", "401", "404"), public=False, body_required=True) -> dict:
    op = {"operationId": operation_id, "tags": [tag], "summary": summary, "parameters": list(params),
          "responses": {**ok, **_errors(*errors)}}
    if body is not None:
        op["requestBody"] = {"required": body_required, **_json(body)}
    if public:
        op["security"] = []
    return op


IDEMPOTENT_OPERATIONS = (("/api/agents", "post"), ("/api/agents/{agent_id}/run", "post"),
                         ("/api/agents/{agent_id}/backfill", "post"))
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes the request happen once per tenant for 24 h: the same key with the same method, path and "
                   "body answers the first 2xx answer again (header Idempotent-Replayed: true); with another "
                   "request it is 422 IDEMPOTENCY_KEY_REUSED; while the first still runs, 409 IDEMPOTENCY_KEY_IN_USE.",
}


def _with_idempotency_key(op: dict) -> None:
    op["parameters"].append(IDEMPOTENCY_KEY)
    op["responses"].update(_resp("409", "IDEMPOTENCY_KEY_IN_USE: a request with this key is still in progress", ERR))
    op["responses"].update(_resp("422", "IDEMPOTENCY_KEY_REUSED: the key was used with another request", ERR))


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


PAGE = {
    "type": "object",
    "description": "one page of a list; pass nextToken back for the next page (null: the last page)",
    "properties": {"items": {"type": "array", "items": {}}, "nextToken": {"type": ["string", "null"]}},
    "required": ["items", "nextToken"],
}


def _page(item_schema: str) -> dict:
    """A page whose items are ``item_schema``: the shared Page, its items narrowed."""
    return {"allOf": [ref("Page"), {"type": "object", "properties": {"items": {"type": "array", "items": ref(item_schema)}}}]}


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


OBJ = {"type": "object"}
RUN_ACCEPTED = {"type": "object", "properties": {"sessionId": {"type": "string"}, "status": {"type": "string"},
                                                 "waitingReason": S.SESSION_OUT["properties"]["waitingReason"],
                                                 "waitingFor": S.SESSION_OUT["properties"]["waitingFor"]}}
VALIDATION_RESULT = {"type": "object", "properties": {
    "valid": {"type": "boolean"}, "expression": {"type": "string"}, "cronExpression": {"type": "string"},
    "nextRuns": {"type": "array", "items": {"type": "string"}}, "warnings": {"type": "array", "items": {"type": "string"}}}}
BULK_RESULT = {"type": "object", "properties": {"results": {"type": "array", "items": {"type": "object"}}}}
CONFLICTS = {"type": "object", "properties": {"conflicts": {"type": "array", "items": ref("ScheduleConflict")}}}
FIRES = {"type": "object", "properties": {"items": {"type": "array", "items": ref("Fire")}}}
REDRIVE_RESULT = {"type": "object", "properties": {"redriven": {"type": "integer"}}}
BULK_CANCEL_RESULT = {"type": "object", "properties": {"cancelled": {"type": "integer"}}}
EVENT_LIST = {"type": "object", "properties": {
    "items": {"type": "array", "items": ref("Event")}, "nextSince": {"type": "integer"},
    "oldestSeq": {"type": "integer", "description": "present when events after since have expired"}}}
TICKET = {"type": "object", "properties": {
    "ticket": {"type": "string"}, "expiresAt": {"type": "string", "format": "date-time"},
    "expiresInSeconds": {"type": "integer"}, "url": {"type": "string"}}}
HEALTH = {"type": "object", "properties": {"status": {"type": "string"}}}
CALLBACK_ANSWER = {"type": "object", "properties": {
    "status": {"type": "string", "description": "the run's status"},
    "cancelRequested": {"type": "boolean", "description": "the run was cancelled: stop working on it"}}}


def _callback_schemas() -> dict[str, dict]:
    names = {"progress": "CallbackProgress", "heartbeat": "CallbackHeartbeat",
             "complete": "CallbackComplete", "fail": "CallbackFail"}
    return {names[a]: body for a, body in S.CALLBACK_BODIES.items()}


def _callback_paths() -> dict:
    """The agents' callbacks: the attempt's callback token as the bearer, no tenant JWT."""
    params = [SESSION_ID, {"name": "attempt", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}]
    ops = {"progress": ("reportProgress", "Report progress (an agent:progress event)", "CallbackProgress"),
           "heartbeat": ("sendHeartbeat", "Heartbeat, with details for the next attempt", "CallbackHeartbeat"),
           "complete": ("completeRun", "End the attempt: success", "CallbackComplete"),
           "fail": ("failRun", "End the attempt: failure (retried by policy)", "CallbackFail")}
    out = {}
    for action, (op_id, summary, body) in ops.items():
        op = _op(op_id, "sessions", summary, _resp("200", "recorded (or the repeat of the call that ended the attempt)",
                                                     ref("CallbackAnswer")),
                 params=params, body=ref(body), body_required=action == "progress", errors=("400", "404", "409"))
        op["responses"].update(_resp("413", "body over 1 MB", ERR))
        op["responses"]["409"] = {"description": "the attempt has ended: RUN_FINISHED with status and endedBy",
                                  **_json(ERR)}
        op["security"] = [{"callbackToken": []}]
        out[f"/api/callbacks/{{session_id}}/{{attempt}}/{action}"] = {"post": op}
    return out

# Every named schema, in the order the document lists them.
SCHEMAS: dict[str, dict] = {
    "Error": S.ERROR, "Agent": S.AGENT_OUT, "Schedule": S.SCHEDULE_OUT, "Session": S.SESSION_OUT, "Event": EVENT,
    "Page": PAGE,
    "AgentPage": _page("Agent"), "SessionPage": _page("Session"), "DeadRunPage": _page("DeadRun"),
    "ScheduleVersionPage": _page("ScheduleVersion"),
    "DeadRun": DLQ_ITEM, "ScheduleVersion": HISTORY_ITEM, "ScheduleConflict": CONFLICT, "Fire": FIRE,
    "SchedulerStatus": STATUS, "BackfillResult": BACKFILL_OUT, "RunAccepted": RUN_ACCEPTED,
    "ValidationResult": VALIDATION_RESULT, "BulkResult": BULK_RESULT, "ScheduleConflicts": CONFLICTS,
    "FireLedger": FIRES, "RedriveResult": REDRIVE_RESULT, "EventList": EVENT_LIST, "EventTicket": TICKET,
    "Health": HEALTH,
    "AgentCreate": S.AGENT_CREATE, "AgentUpdate": S.AGENT_PATCH, "ScheduleRequest": S.SCHEDULE_PUT,
    "RunRequest": S.RUN_NOW, "BackfillRequest": S.BACKFILL, "ValidateRequest": S.VALIDATE,
    "BulkRequest": S.BULK, "RedriveRequest": S.REDRIVE,
    "Pool": S.POOL_OUT, "PoolPage": _page("Pool"), "PoolRequest": S.POOL_PUT, "Throttle": S.THROTTLE,
    "SigningSecret": S.SIGNING_SECRET_OUT, "SigningSecretRequest": S.SIGNING_SECRET_ROTATE,
    "CallbackAnswer": CALLBACK_ANSWER, **_callback_schemas(),
    "BulkCancelRequest": S.BULK_CANCEL, "BulkCancelResult": BULK_CANCEL_RESULT,
}
POOL_NAME_PARAM = {"name": "name", "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$"}}


def _referenced(schema, *, skip: str | None = None):
    """``schema`` with every nested copy of a named schema replaced by its ``$ref`` (``skip``: the schema's own name)."""
    if isinstance(schema, list):
        return [_referenced(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    for name, named in SCHEMAS.items():
        if name != skip and schema == named:
            return ref(name)
    return {k: _referenced(v) for k, v in schema.items()}


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict:
    R = ref
    status_param = {"name": "status", "in": "query", "required": False,
                    "schema": {"type": "string", "enum": list(S.SESSION_OUT["properties"]["status"]["enum"])}}
    paths = {
        "/api/health": {"get": _op("getHealth", "meta", "Liveness", _resp("200", "ok", R("Health")), errors=(), public=True)},
        "/api/openapi.json": {"get": _op("getOpenApiDocument", "meta", "This document", _resp("200", "OpenAPI 3 document", {"type": "object"}), errors=(), public=True)},
        "/api/agents": {
            "post": _op("createAgent", "agents", "Create an agent", _resp("201", "the agent", R("Agent")), body=R("AgentCreate"), errors=("400", "401")),
            "get": _op("listAgents", "agents", "List your agents", _resp("200", "a page of agents", R("AgentPage")), params=[LIMIT, TOKEN, LABEL], errors=("400", "401")),
        },
        "/api/agents/{agent_id}": {
            "get": _op("getAgent", "agents", "Read an agent", _resp("200", "the agent", R("Agent")), params=[AGENT_ID], errors=("401", "404")),
            "patch": _op("updateAgent", "agents", "Update an agent (partial)", _resp("200", "the agent", R("Agent")), params=[AGENT_ID], body=R("AgentUpdate")),
            "delete": _op("deleteAgent", "agents", "Delete an agent and its schedule", _resp("204", "deleted"), params=[AGENT_ID], errors=("401", "404")),
        },
        "/api/agents/{agent_id}/signing-secret": {
            "post": _op("rotateSigningSecret", "agents",
                        "Rotate a webhook agent's signing secret (both sign for 24 h unless revokePrevious)",
                        _resp("200", "the new secret, shown once", R("SigningSecret")), params=[AGENT_ID],
                        body=R("SigningSecretRequest"), body_required=False),
        },
        "/api/agents/{agent_id}/schedule": {
            "post": _op("setSchedule", "schedules", "Create or replace the schedule", _resp("200", "the schedule, with warnings and conflicts", R("Schedule")), params=[AGENT_ID], body=R("ScheduleRequest")),
            "get": _op("getSchedule", "schedules", "Read the schedule with its next runs", _resp("200", "the schedule", R("Schedule")), params=[AGENT_ID], errors=("401", "404")),
            "delete": _op("deleteSchedule", "schedules", "Remove the schedule (the agent stays)", _resp("204", "removed"), params=[AGENT_ID], errors=("401", "404")),
        },
        "/api/agents/{agent_id}/schedule/history": {
            "get": _op("getScheduleHistory", "schedules", "Every change of the schedule, newest first", _resp("200", "a page of versions", R("ScheduleVersionPage")),
                       params=[AGENT_ID, LIMIT, TOKEN]),
        },
        "/api/agents/{agent_id}/backfill": {
            "post": _op("backfillAgent", "schedules", "Run the fires of a past window that never ran (trigger BACKFILL)",
                        _resp("202", "the runs created", R("BackfillResult")), params=[AGENT_ID], body=R("BackfillRequest")),
        },
        "/api/agents/{agent_id}/run": {
            "post": _op("runAgent", "agents", "Run now (429 BUDGET_EXHAUSTED once the agent's daily budget is used up)",
                        _resp("202", "queued", R("RunAccepted")), params=[AGENT_ID], body=R("RunRequest"), body_required=False,
                        errors=("400", "401", "404", "429")),
        },
        "/api/agents/{agent_id}/sessions": {
            "get": _op("listSessions", "sessions", "Run history, newest first", _resp("200", "a page of sessions", R("SessionPage")),
                       params=[AGENT_ID, LIMIT, TOKEN, status_param]),
        },
        "/api/agents/{agent_id}/sessions/{session_id}": {
            "get": _op("getSession", "sessions", "One session", _resp("200", "the session", R("Session")), params=[AGENT_ID, SESSION_ID], errors=("401", "404")),
        },
        "/api/agents/{agent_id}/sessions/{session_id}/cancel": {
            "post": _op("cancelSession", "sessions", "Cancel a run", _resp("202", "cancelled or cancelling", R("Session")), params=[AGENT_ID, SESSION_ID], errors=("401", "404", "409")),
        },
        "/api/sessions/cancel": {
            "post": _op("cancelSessions", "sessions", "Cancel many of your unfinished runs (by agents, statuses, scheduled before)",
                        _resp("202", "how many were cancelled", R("BulkCancelResult")), body=R("BulkCancelRequest"), errors=("400", "401")),
        },
        "/api/agents/{agent_id}/fires": {
            "get": _op("listFires", "schedules", "Every fire time in a window and what became of it", _resp("200", "the fire ledger", R("FireLedger")),
                       params=[AGENT_ID, FROM, {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}]),
        },
        "/api/scheduler/status": {"get": _op("getSchedulerStatus", "scheduler", "Scheduler status", _resp("200", "status", R("SchedulerStatus")), errors=("401",))},
        "/api/scheduler/pause": {"post": _op("pauseScheduler", "scheduler", "Pause admission (admin)", _resp("200", "status", R("SchedulerStatus")), errors=("401", "403"))},
        "/api/scheduler/resume": {"post": _op("resumeScheduler", "scheduler", "Resume admission (admin)", _resp("200", "status", R("SchedulerStatus")), errors=("401", "403"))},
        "/api/schedules/validate": {
            "post": _op("validateSchedule", "schedules", "Validate an expression and list its next runs", _resp("200", "valid", R("ValidationResult")),
                        body=R("ValidateRequest"), errors=("400", "401")),
        },
        "/api/schedules/bulk": {
            "post": _op("bulkUpdateSchedules", "schedules", "Apply many schedule operations", _resp("200", "one result per operation, in order", R("BulkResult")),
                        body=R("BulkRequest"), errors=("400", "401")),
        },
        "/api/schedules/conflicts": {
            "get": _op("listScheduleConflicts", "schedules", "Conflicts across your schedules", _resp("200", "conflicts", R("ScheduleConflicts")),
                       params=[FROM, {"name": "hours", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 168}}], errors=("400", "401")),
        },
        "/api/dlq": {"get": _op("listDeadRuns", "dlq", "Dead runs you can see", _resp("200", "a page of dead runs", R("DeadRunPage")), params=[LIMIT, TOKEN], errors=("400", "401"))},
        "/api/dlq/redrive": {
            "post": _op("redriveDeadRuns", "dlq", "Give dead runs a new attempt", _resp("202", "how many", R("RedriveResult")), body=R("RedriveRequest"), errors=("400", "401"), body_required=False),
        },
        # The event stream (events as sent over WebSocket, each with seq and id) and the dashboard.
        "/api/events": {
            "get": _op("listEvents", "events", "Your retained events after a seq, in seq order", _resp("200", "a page of events", R("EventList")),
                       params=[{"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                               {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}}], errors=("400", "401")),
        },
        "/api/events/ticket": {
            "post": _op("createEventTicket", "events", "A single-use WebSocket ticket (60 s) for ?ticket=", _resp("200", "the ticket", R("EventTicket")), errors=("401",), body_required=False),
        },
        # Pools: limits (concurrency, throttle, a provider's back-off) shared by the agents that name them.
        "/api/pools": {"get": _op("listPools", "pools", "Your pools", _resp("200", "every pool", R("PoolPage")), errors=("401",))},
        "/api/pools/{name}": {
            "put": _op("putPool", "pools", "Create or replace a pool's limits", _resp("200", "the pool", R("Pool")),
                       params=[POOL_NAME_PARAM], body=R("PoolRequest"), errors=("400", "401"), body_required=False),
            "get": _op("getPool", "pools", "A pool with its running runs and blockedUntil", _resp("200", "the pool", R("Pool")),
                       params=[POOL_NAME_PARAM], errors=("400", "401", "404")),
            "delete": _op("deletePool", "pools", "Delete a pool (409 while an agent names it)", _resp("204", "deleted"),
                          params=[POOL_NAME_PARAM], errors=("400", "401", "404", "409")),
        },
        **_callback_paths(),
        "/dashboard": {"get": {"operationId": "getDashboard", "tags": ["meta"], "summary": "The dashboard (HTML)", "security": [],
                               "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    for path, method in IDEMPOTENT_OPERATIONS:
        _with_idempotency_key(paths[path][method])
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent Scheduler", "version": "1.0.0",
                 "description": "Serverless scheduler for AI agents: cron in any zone, priorities, a concurrency cap, retries, DLQ, run history."},
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": {name: _referenced(_clean(schema), skip=name) for name, schema in SCHEMAS.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                                "callbackToken": {"type": "http", "scheme": "bearer",
                                                  "description": "the attempt's callback token (callback.token)"}},
        },
        "security": [{"bearer": []}],
    }


TAGS = {
    "agents": "Agents: create, read, change, delete, run now",
    "schedules": "Schedules of agents: set, read, validate, history, fire ledger, conflicts, bulk changes, backfill",
    "sessions": "Runs of an agent: history, one run, cancel",
    "scheduler": "The scheduler itself: status, pause, resume",
    "dlq": "Dead runs and their redrive",
    "events": "The event stream",
    "pools": "Pools: limits shared across agents",
    "meta": "Health, this document, the dashboard",
}
