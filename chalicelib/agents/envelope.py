"""The run envelope: what a ``webhook`` agent receives as its body and a ``lambda``
agent as its event. A pure function of the run; no I/O.

``{"type": "agent.run", "sessionId", "attempt", "retriesLeft", "trigger", "priority",
"scheduledFor", "timeoutSeconds", "deadline", "redrivenFrom", "lastHeartbeatDetails",
"agent": {"id", "name"}, "input", "callback": {"url", "token", "heartbeatSeconds"} or null}``

Times are ISO 8601 with offset (UTC), as the API shows them. ``attempt`` counts
deliveries from 1; ``retriesLeft`` is how many attempts may still follow this one;
``deadline`` is this attempt's start plus ``timeoutSeconds``. ``input`` is the run's
input, else the kind's ``config.payload`` (``lambda``), else null.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

ENVELOPE_TYPE = "agent.run"
CANCEL_TYPE = "agent.cancel"


def iso(epoch: float | None) -> str | None:
    """ISO 8601 with offset, as the API answers show times."""
    if epoch is None:
        return None
    dt = datetime.fromtimestamp(float(epoch), tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds" if float(epoch) % 1 else "seconds")


def build_envelope(ctx: Any, config: dict | None = None) -> dict:
    """The envelope of the attempt ``ctx`` runs (the worker's run context).

    Reads ``ctx.session`` (trigger, priority, scheduled time, timeout, attempts,
    redrive origin, ``last_heartbeat_details`` when the session keeps them),
    ``ctx.agent`` (id, name), ``ctx.attempt``, ``ctx.input``, ``ctx.deadline``
    (epoch seconds: the fallback when the session has no start time) and
    ``ctx.callback`` (``{url, token, heartbeatSeconds}`` or None).
    """
    session = getattr(ctx, "session", None)
    agent = getattr(ctx, "agent", None)
    attempt = int(ctx.attempt)
    timeout = getattr(session, "timeout_seconds", None)
    started = getattr(session, "started_at", None)
    deadline: float | None = getattr(ctx, "deadline", None)
    if timeout is not None and started is not None:
        deadline = float(started) + float(timeout)
    max_attempts = getattr(session, "max_attempts", None)
    input_value = ctx.input
    if input_value is None and config is not None:
        input_value = config.get("payload")
    callback = getattr(ctx, "callback", None)
    return {
        "type": ENVELOPE_TYPE,
        "sessionId": ctx.session_id,
        "attempt": attempt,
        "retriesLeft": max(0, int(max_attempts) - attempt) if max_attempts is not None else None,
        "trigger": _value(getattr(session, "trigger", None)),
        "priority": _value(getattr(session, "priority", None)),
        "scheduledFor": iso(getattr(session, "scheduled_for", None)),
        "timeoutSeconds": int(timeout) if timeout is not None else None,
        "deadline": iso(deadline),
        "redrivenFrom": getattr(session, "redriven_from", None),
        "lastHeartbeatDetails": getattr(session, "last_heartbeat_details", None),
        "agent": {
            "id": getattr(agent, "agent_id", None) or ctx.agent_id,
            "name": getattr(agent, "name", None),
        },
        "input": input_value,
        "callback": _callback(callback),
    }


def cancel_envelope(session_id: str, attempt: int) -> dict:
    """What a cancelled async run's agent is told (best effort)."""
    return {"type": CANCEL_TYPE, "sessionId": session_id, "attempt": int(attempt)}


def encode(envelope: dict) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON; Decimal numbers as DynamoDB
    returns them are written as numbers."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=_number).encode("utf-8")


def _callback(callback: Any) -> dict | None:
    if not callback:
        return None
    return {
        "url": callback.get("url"),
        "token": callback.get("token"),
        "heartbeatSeconds": callback.get("heartbeatSeconds"),
    }


def _value(item: Any) -> Any:
    return getattr(item, "value", item)


def _number(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
