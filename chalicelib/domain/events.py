"""Event payloads pushed to WebSocket clients. Pure.

Every event is ``{"event": NAME, "data": {...}, "timestamp": ISO}``; every
agent event's data carries ``agentId``, ``sessionId`` and ``attempt``.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

AGENT_STARTED = "agent:started"
AGENT_PROGRESS = "agent:progress"
AGENT_COMPLETED = "agent:completed"
AGENT_FAILED = "agent:failed"
AGENT_ALERT = "agent:alert"
AGENT_SKIPPED = "agent:skipped"
SCHEDULE_CHANGED = "schedule:changed"
RESYNC = "resync"
SCHEDULER_STATUS = "scheduler:status"
SUBSCRIBED = "subscribed"
PONG = "pong"

AGENT_EVENTS = (AGENT_STARTED, AGENT_PROGRESS, AGENT_COMPLETED, AGENT_FAILED, AGENT_ALERT, AGENT_SKIPPED)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def envelope(name: str, data: dict[str, Any], now: float) -> dict[str, Any]:
    return {"event": name, "data": data, "timestamp": _iso(now)}


def _agent(agent_id: str, session_id: str, attempt: int, **extra: Any) -> dict[str, Any]:
    return {"agentId": agent_id, "sessionId": session_id, "attempt": attempt, **extra}


def started(
    agent_id: str, session_id: str, attempt: int, *, now: float, scheduled_for: float, trigger: str
) -> dict[str, Any]:
    return envelope(
        AGENT_STARTED,
        _agent(
            agent_id,
            session_id,
            attempt,
            scheduledFor=_iso(scheduled_for),
            startedAt=_iso(now),
            trigger=trigger,
            latenessMs=max(0, round((now - scheduled_for) * 1000)),
        ),
        now,
    )


def progress(
    agent_id: str, session_id: str, attempt: int, *, now: float, percent: float, message: str | None
) -> dict[str, Any]:
    pct = max(0.0, min(100.0, float(percent)))
    return envelope(
        AGENT_PROGRESS,
        _agent(agent_id, session_id, attempt, progress=round(pct, 2), message=message or ""),
        now,
    )


def completed(
    agent_id: str, session_id: str, attempt: int, *, now: float, duration_ms: int, output: Any
) -> dict[str, Any]:
    return envelope(
        AGENT_COMPLETED,
        _agent(agent_id, session_id, attempt, durationMs=duration_ms, output=output),
        now,
    )


def failed(
    agent_id: str, session_id: str, attempt: int, *, now: float, category: str, message: str,
    will_retry: bool, next_attempt_at: float | None,
) -> dict[str, Any]:
    return envelope(
        AGENT_FAILED,
        _agent(
            agent_id,
            session_id,
            attempt,
            error={"category": category, "message": message},
            willRetry=will_retry,
            nextAttemptAt=_iso(next_attempt_at),
        ),
        now,
    )


def alert(
    agent_id: str, session_id: str, attempt: int, *, now: float, consecutive_failures: int, message: str
) -> dict[str, Any]:
    return envelope(
        AGENT_ALERT,
        _agent(
            agent_id,
            session_id,
            attempt,
            consecutiveFailures=consecutive_failures,
            message=message,
        ),
        now,
    )


def skipped(agent_id: str, session_id: str, attempt: int, *, now: float, reason: str | None,
            scheduled_for: float) -> dict[str, Any]:
    """A fire that did not run (overlap, budget, excluded date, pause...), with the reason."""
    return envelope(
        AGENT_SKIPPED,
        _agent(agent_id, session_id, attempt, reason=reason, scheduledFor=_iso(scheduled_for)),
        now,
    )


def schedule_changed(agent_id: str, *, now: float, version: int, action: str, changed_by: str | None = None,
                     schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """An agent's schedule was created, updated, enabled, disabled or deleted."""
    data = {"agentId": agent_id, "version": version, "action": action}
    if changed_by is not None:
        data["changedBy"] = changed_by
    if schedule is not None:
        data["schedule"] = schedule
    return envelope(SCHEDULE_CHANGED, data, now)


def scheduler_status(status: dict[str, Any], now: float) -> dict[str, Any]:
    return envelope(SCHEDULER_STATUS, status, now)


class ProgressLimiter:
    """At most one progress event per ``interval`` seconds per run; 0 and 100 always pass."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._last: float | None = None

    def allow(self, now: float, percent: float) -> bool:
        if percent >= 100 or self._last is None or now - self._last >= self.interval:
            self._last = now
            return True
        return False
