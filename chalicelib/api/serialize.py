"""Records to API JSON (camelCase, ISO 8601 with offset)."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from chalicelib.domain.records import Agent, Session
from chalicelib.domain.schedule import ScheduleSpec


def iso(epoch: float | None, tz: str | None = None) -> str | None:
    if epoch is None:
        return None
    dt = datetime.fromtimestamp(epoch, tz=timezone.utc)
    if tz and tz != "UTC":
        dt = dt.astimezone(ZoneInfo(tz))
    return dt.isoformat(timespec="milliseconds" if epoch % 1 else "seconds")


def schedule_fields_json(agent_id: str, spec: ScheduleSpec, version: int) -> dict:
    """The schedule's own fields as answers show them (no next runs)."""
    tz = spec.timezone
    return {
        "agentId": agent_id,
        "expression": spec.cron_expression,
        "cronExpression": spec.cron_expression,
        "timezone": spec.timezone,
        "priority": spec.priority.value,
        "enabled": spec.enabled,
        "catchup": spec.catchup.value,
        "catchupWindowSeconds": spec.catchup_window_seconds,
        "overlapPolicy": spec.overlap_policy.value,
        "startAt": iso(spec.start_at, tz),
        "endAt": iso(spec.end_at, tz),
        "jitterSeconds": spec.jitter_seconds,
        "excludeDates": list(spec.exclude_dates),
        "pausedUntil": iso(spec.paused_until, tz),
        "disabledReason": spec.disabled_reason,
        "version": version,
        "createdAt": iso(spec.created_at),
        "updatedAt": iso(spec.updated_at),
    }


def schedule_json(agent: Agent, spec: ScheduleSpec, next_run_at: float | None, next_runs: list[float]) -> dict:
    tz = spec.timezone
    out = schedule_fields_json(agent.agent_id, spec, agent.schedule_version)
    out["nextRunAt"] = iso(next_run_at, tz)
    out["nextRuns"] = [iso(t, tz) for t in next_runs]
    return out


def agent_json(agent: Agent, schedule: dict | None) -> dict:
    return {
        "id": agent.agent_id,
        "name": agent.name,
        "kind": agent.kind,
        "config": agent.config,
        "description": agent.description,
        "labels": dict(agent.labels),
        "timeoutSeconds": agent.timeout_seconds,
        "maxRetries": agent.max_retries,
        "heartbeatSeconds": agent.heartbeat_seconds,
        "budget": agent.budget.to_json() if agent.budget is not None else None,
        "pauseAfterFailures": agent.pause_after_failures,
        "createdAt": iso(agent.created_at),
        "updatedAt": iso(agent.updated_at),
        "schedule": schedule,
        "maxConcurrency": agent.max_concurrency,
        "throttle": agent.throttle,
        "pools": list(agent.pools),
    }


def session_json(s: Session, *, now: float | None = None, paused: bool = False) -> dict:
    """``now``/``paused`` (the scheduler's state when read) let the answer say why a waiting run waits."""
    from chalicelib.domain.admission import waiting_reason

    reason, waiting_for = waiting_reason(s, now, paused) if now is not None else (
        (s.waiting_reason, s.waiting_for) if s.status.value in ("QUEUED", "RETRYING") and s.stage == "PENDING"
        else (None, None))
    return {
        "sessionId": s.session_id,
        "agentId": s.agent_id,
        "status": s.status.value,
        "trigger": s.trigger.value,
        "priority": s.priority.value,
        "scheduledFor": iso(s.scheduled_for),
        "queuedAt": iso(s.queued_at),
        "startedAt": iso(s.started_at),
        "finishedAt": iso(s.finished_at),
        "durationMs": s.duration_ms,
        "attempt": s.attempt,
        "maxAttempts": s.max_attempts,
        "redrivenFrom": s.redriven_from,
        "redrivenTo": s.redriven_to,
        "error": s.error,
        "output": s.output,
        "input": s.input,
        "skipReason": s.skip_reason,
        "nextAttemptAt": iso(s.next_attempt_at),
        "waitingForSlot": s.stage == "PENDING",
        "waitingReason": reason,
        "waitingFor": waiting_for,
        "async": s.is_async,
        "lastHeartbeatAt": iso(s.last_heartbeat_at),
        "progress": _progress_json(s.progress),
        "usage": s.usage,
        "rateLimitedWaits": s.rate_limited_waits,
    }


def _progress_json(p: dict | None) -> dict | None:
    """The latest progress an agent reported by callback: ``{percent, message, at}``."""
    if not p:
        return None
    return {"percent": p.get("percent"), "message": p.get("message") or "", "at": iso(p.get("at"))}
