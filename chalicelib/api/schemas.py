"""Request and response schemas: validated on the way in, published in OpenAPI."""
from __future__ import annotations

from typing import Any

from chalicelib.domain.model import CatchupPolicy, OverlapPolicy, Priority, SessionStatus

PRIORITIES = [p.value for p in Priority]
KINDS = ["echo", "sleep", "fail", "http", "lambda", "webhook"]
DATETIME = {"type": "string", "format": "date-time", "maxLength": 64}
NULLABLE_DATETIME = {"type": ["string", "null"], "format": "date-time", "maxLength": 64}

AGENT_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "kind": {"type": "string", "enum": KINDS},
    "config": {"type": "object", "x-maxBytes": 32 * 1024, "description": "kind-specific settings, at most 32 KB"},
    "description": {"type": ["string", "null"], "maxLength": 2000},
    "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 86400,
                       "description": "at most 900, or 86400 for webhook and lambda agents"},
    "maxRetries": {"type": "integer", "minimum": 0, "maximum": 10},
    "budget": {
        "type": ["object", "null"],
        "description": "daily limits, counted per calendar day in timezone (at least one limit; null removes)",
        "properties": {
            "maxRunsPerDay": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "maxRuntimeSecondsPerDay": {"type": "integer", "minimum": 1, "maximum": 1000 * 86400},
            "maxCostUsdPerDay": {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000},
            "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
            "onExhausted": {"type": "string", "enum": ["SKIP", "PAUSE"]},
        },
        "additionalProperties": False,
    },
    "pauseAfterFailures": {"type": ["integer", "null"], "minimum": 1, "maximum": 100,
                           "description": "consecutive DEAD runs that disable the schedule (null: never)"},
    "heartbeatSeconds": {"type": ["integer", "null"], "minimum": 10, "maximum": 3600,
                         "description": "an async attempt with no callback this long ends TIMEOUT; null: none"},
    "labels": {
        "type": ["object", "null"], "maxProperties": 32,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": "^[A-Za-z0-9._/-]+$"},
        "additionalProperties": {"type": "string", "maxLength": 255},
        "description": "string labels (at most 32); GET /api/agents?label=key=value selects by them",
    },
}

# Flow control: an agent's own limits (its implicit pool) and the shared pools it draws from.
POOL_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "description": "letters, digits, '.', '_' and '-'"}
THROTTLE = {
    "type": ["object", "null"],
    "properties": {
        "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
        "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 86400},
    },
    "required": ["limit", "periodSeconds"],
    "additionalProperties": False,
    "description": "at most limit run starts per period; more wait for the next period; null removes it",
}
MAX_CONCURRENCY = {"type": ["integer", "null"], "minimum": 1, "maximum": 1000,
                   "description": "at most this many runs at once; null removes the limit"}
LIMIT_FIELDS = {
    "maxConcurrency": MAX_CONCURRENCY,
    "throttle": THROTTLE,
    "pools": {"type": ["array", "null"], "maxItems": 4, "items": POOL_NAME,
              "description": "up to 4 pool names; every pool must allow a run before it starts"},
}
AGENT_FIELDS.update(LIMIT_FIELDS)
POOL_PUT = {
    "type": "object",
    "properties": {"maxConcurrency": MAX_CONCURRENCY, "throttle": THROTTLE},
    "additionalProperties": False,
}
POOL_OUT = {
    "type": "object",
    "properties": {
        "name": POOL_NAME,
        "maxConcurrency": MAX_CONCURRENCY,
        "throttle": THROTTLE,
        "running": {"type": "integer", "description": "runs holding the pool (admitted or running)"},
        "blockedUntil": {"type": ["string", "null"], "format": "date-time",
                         "description": "a provider's rate limit: no run of the pool starts before this"},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
    },
}

AGENT_CREATE = {
    "type": "object",
    "properties": AGENT_FIELDS,
    "required": ["name", "kind"],
    "additionalProperties": False,
}

AGENT_PATCH = {
    "type": "object",
    "properties": {k: v for k, v in AGENT_FIELDS.items() if k != "kind"} | {
        "kind": AGENT_FIELDS["kind"],
        "schedule": {"type": ["object", "null"],
                     "description": "replace the schedule (the body of POST .../schedule), or null to remove it"},
    },
    "additionalProperties": False,
    "minProperties": 1,
}

EXPRESSION = {
    "type": "string", "minLength": 1, "maxLength": 200,
    "description": "cron (5 fields, aliases, H), rate(N minute|minutes|hour|hours|day|days) or "
                   "at(YYYY-MM-DDTHH:MM:SS) in the schedule's zone",
}
EXCLUDE_DATES = {
    "type": "array", "maxItems": 366,
    "items": {"type": "string", "minLength": 10, "maxLength": 10, "format": "date"},
    "description": "local dates (YYYY-MM-DD, the schedule's zone) whose fires never run",
}

SCHEDULE_FIELDS = {
    "expression": EXPRESSION,
    "cronExpression": {**EXPRESSION, "description": "the same as expression (kept); give exactly one of the two"},
    "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
    "priority": {"type": "string", "enum": PRIORITIES},
    "enabled": {"type": "boolean"},
    "catchup": {"type": "string", "enum": [c.value for c in CatchupPolicy]},
    "catchupWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 7 * 86400},
    "overlapPolicy": {"type": "string", "enum": [o.value for o in OverlapPolicy]},
    "startAt": NULLABLE_DATETIME,
    "endAt": NULLABLE_DATETIME,
    "jitterSeconds": {"type": "integer", "minimum": 0, "maximum": 3600,
                      "description": "at most the shortest interval between two fires"},
    "excludeDates": EXCLUDE_DATES,
    "pausedUntil": {**NULLABLE_DATETIME,
                    "description": "fires before it are SKIPPED (PAUSED); after it the schedule fires again"},
}

SCHEDULE_PUT = {
    "type": "object",
    "properties": SCHEDULE_FIELDS,
    "additionalProperties": False,
}

SIGNING_SECRET_ROTATE = {
    "type": "object",
    "properties": {
        "revokePrevious": {"type": "boolean",
                           "description": "drop the old secret at once (default: both sign deliveries for 24 h)"},
    },
    "additionalProperties": False,
}

RUN_NOW = {
    "type": "object",
    "properties": {
        "priority": {"type": "string", "enum": PRIORITIES},
        "input": {"x-maxBytes": 32 * 1024, "description": "any JSON, handed to the agent (at most 32 KB)"},
    },
    "additionalProperties": False,
}

VALIDATE = {
    "type": "object",
    "properties": {
        "expression": SCHEDULE_FIELDS["expression"],
        "cronExpression": SCHEDULE_FIELDS["cronExpression"],
        "timezone": SCHEDULE_FIELDS["timezone"],
        "startAt": NULLABLE_DATETIME,
        "excludeDates": EXCLUDE_DATES,
        "from": DATETIME,
        "count": {"type": "integer", "minimum": 1, "maximum": 100},
        "timeoutSeconds": AGENT_FIELDS["timeoutSeconds"],
        "agentId": {"type": "string", "minLength": 1, "maxLength": 100},
    },
    "additionalProperties": False,
}

BACKFILL = {
    "type": "object",
    "properties": {
        "from": DATETIME,
        "to": DATETIME,
        "priority": {"type": "string", "enum": PRIORITIES},
        "maxRuns": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    "required": ["from", "to"],
    "additionalProperties": False,
}

BULK = {
    "type": "object",
    "properties": {
        "operations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "properties": {
                    "agentId": {"type": "string", "minLength": 1, "maxLength": 100},
                    "action": {"type": "string", "enum": ["schedule", "unschedule", "enable", "disable"]},
                    "schedule": {"type": "object"},
                },
                "required": ["agentId", "action"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["operations"],
    "additionalProperties": False,
}

REDRIVE = {
    "type": "object",
    "properties": {
        "sessionIds": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"type": "string", "minLength": 1, "maxLength": 100},
        }
    },
    "additionalProperties": False,
}

BULK_CANCEL = {
    "type": "object",
    "properties": {
        "agentIds": {"type": "array", "minItems": 1, "maxItems": 100,
                     "items": {"type": "string", "minLength": 1, "maxLength": 100}},
        "statuses": {"type": "array", "minItems": 1, "maxItems": 3,
                     "items": {"type": "string", "enum": ["QUEUED", "RETRYING", "RUNNING"]}},
        "scheduledBefore": DATETIME,
    },
    "additionalProperties": False,
    "description": "at least one of agentIds and scheduledBefore",
}

# --- responses (documentation) ------------------------------------------------------
ERROR = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
    "required": ["code", "message"],
}
SCHEDULE_OUT = {
    "type": "object",
    "properties": {
        "agentId": {"type": "string"},
        **{k: v for k, v in SCHEDULE_FIELDS.items()},
        "version": {"type": "integer", "description": "the schedule's latest version (its history)"},
        "disabledReason": {"type": ["string", "null"], "enum": ["CONSECUTIVE_FAILURES", "BUDGET_EXHAUSTED", None],
                           "description": "why the system disabled the schedule; enabling it clears this"},
        "nextRunAt": {"type": ["string", "null"], "format": "date-time"},
        "nextRuns": {"type": "array", "items": {"type": "string", "format": "date-time"}},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "conflicts": {"type": "array", "items": {"type": "object"}},
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
    },
}
AGENT_OUT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        **AGENT_FIELDS,
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
        "schedule": {"oneOf": [SCHEDULE_OUT, {"type": "null"}]},
        "budgetUsage": {
            "type": ["object", "null"],
            "description": "today's counters in the budget's zone (null without a budget); read-only",
            "properties": {"day": {"type": "string", "format": "date"}, "runs": {"type": "integer"},
                           "runtimeSeconds": {"type": "number"}, "costUsd": {"type": "number"}},
        },
        "signingSecret": {"type": "string", "description": "webhook agents: whsec_ + base64 of 32 bytes; only in the "
                                                           "answer that creates the secret (create, or the PATCH that "
                                                           "makes the agent a webhook)"},
        "warnings": {"type": "array", "items": {"type": "string"},
                     "description": "create/PATCH: e.g. timeoutSeconds beyond the longest synchronous answer"},
    },
}
SIGNING_SECRET_OUT = {
    "type": "object",
    "properties": {
        "agentId": {"type": "string"},
        "signingSecret": {"type": "string", "description": "the new secret, shown only here"},
        "previousValidUntil": {"type": ["string", "null"], "format": "date-time",
                               "description": "until when deliveries also carry the old secret's signature (null: revoked)"},
    },
}
SESSION_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sessionId": {"type": "string"},
        "agentId": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in SessionStatus]},
        "trigger": {"type": "string", "enum": ["SCHEDULE", "MANUAL", "REDRIVE", "BACKFILL"]},
        "priority": {"type": "string", "enum": PRIORITIES},
        "scheduledFor": {"type": "string", "format": "date-time"},
        "queuedAt": {"type": "string", "format": "date-time"},
        "startedAt": {"type": ["string", "null"], "format": "date-time"},
        "finishedAt": {"type": ["string", "null"], "format": "date-time"},
        "durationMs": {"type": ["integer", "null"]},
        "attempt": {"type": "integer"},
        "maxAttempts": {"type": "integer"},
        "error": {"type": ["object", "null"]},
        "output": {},
        "input": {},
        "skipReason": {"type": ["string", "null"]},
        "nextAttemptAt": {"type": ["string", "null"], "format": "date-time"},
        "waitingReason": {"type": ["string", "null"], "enum": [
            "SCHEDULER_PAUSED", "CAPACITY", "TENANT_LIMIT", "AGENT_CONCURRENCY", "THROTTLED", "POOL_LIMIT",
            "RATE_LIMITED", "BACKOFF", None], "description": "why a QUEUED or RETRYING run has not started"},
        "waitingFor": {"type": ["string", "null"], "description": "the pool it waits for (POOL_LIMIT, RATE_LIMITED)"},
        "async": {"type": "boolean", "description": "the agent accepted the attempt (202) and reports by callback"},
        "lastHeartbeatAt": {"type": ["string", "null"], "format": "date-time"},
        "progress": {"type": ["object", "null"], "description": "the latest progress an agent reported by callback",
                     "properties": {"percent": {"type": "number"}, "message": {"type": "string"},
                                    "at": {"type": "string", "format": "date-time"}}},
        "usage": {
            "type": ["object", "null"], "description": "what the agent reported it used",
            "properties": {"inputTokens": {"type": "integer"}, "outputTokens": {"type": "integer"},
                           "costUsd": {"type": "number"}},
        },
        "rateLimitedWaits": {"type": "integer",
                             "description": "attempts that ended RATE_LIMITED and waited without using a retry"},
    },
}


CALLBACK_USAGE = {
    "type": "object",
    "properties": {
        "inputTokens": {"type": "integer", "minimum": 0, "maximum": 10**12},
        "outputTokens": {"type": "integer", "minimum": 0, "maximum": 10**12},
        "costUsd": {"type": "number", "minimum": 0, "maximum": 10**9},
    },
    "additionalProperties": False,
}

# The bodies of the agents' callbacks (POST /api/callbacks/{sessionId}/{attempt}/{action}).
CALLBACK_BODIES: dict[str, dict] = {
    "progress": {
        "type": "object",
        "properties": {
            "progress": {"type": "number", "minimum": 0, "maximum": 100},
            "message": {"type": ["string", "null"], "maxLength": 2000},
        },
        "required": ["progress"],
        "additionalProperties": False,
    },
    "heartbeat": {
        "type": "object",
        "properties": {
            "details": {"x-maxBytes": 32 * 1024,
                        "description": "any JSON up to 32 KB, handed to the next attempt as lastHeartbeatDetails"},
        },
        "additionalProperties": False,
    },
    "complete": {
        "type": "object",
        "properties": {
            "output": {"description": "any JSON: the run's output (bounded as outputs are)"},
            "usage": {**CALLBACK_USAGE, "type": ["object", "null"]},
        },
        "additionalProperties": False,
    },
    "fail": {
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 1, "maxLength": 2000},
            "category": {"type": "string", "enum": ["TRANSIENT", "PERMANENT", "RATE_LIMITED", "AGENT_ERROR"]},
            "nonRetryable": {"type": "boolean"},
            "retryAfterSeconds": {"type": "number", "minimum": 0, "maximum": 86400},
        },
        "required": ["message"],
        "additionalProperties": False,
    },
}
