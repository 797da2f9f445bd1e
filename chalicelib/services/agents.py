"""Agents, schedules, sessions and the DLQ: what the REST API calls.

Validation of shapes happens in the API layer (schemas); the rules that need
the domain (cron, time zones, kind configs) happen here.
"""
from __future__ import annotations

import builtins
import logging
from datetime import datetime, timezone

from chalicelib.agents.registry import check_config
from chalicelib.api import schemas
from chalicelib.api.serialize import agent_json, iso, schedule_json, session_json
from chalicelib.api.validation import parse_datetime, validate
from chalicelib.domain.cron import CronError, CronSchedule, parse_timezone, schedule_warnings
from chalicelib.domain.ids import due_shard, jitter_offset, new_agent_id
from chalicelib.domain.model import CatchupPolicy, OverlapPolicy, Priority, SessionStatus
from chalicelib.domain.records import Agent, Session
from chalicelib.domain.schedule import ScheduleSpec, add_period_start, close_period
from chalicelib.errors import ConditionFailed, Conflict, NotFound, ValidationError

log = logging.getLogger("agent_scheduler.api")
DEFAULT_TIMEOUT = 300


def _utc(dt: datetime) -> float:
    return dt.astimezone(timezone.utc).timestamp()


def parse_schedule_expression(expression: str, tz: str, agent_id: str | None, field_prefix: str = "") -> CronSchedule:
    try:
        parse_timezone(tz)
    except CronError as exc:
        raise ValidationError(f"{field_prefix}timezone", f"{field_prefix}timezone: {exc.message}") from None
    try:
        return CronSchedule.parse(expression, tz, hash_id=agent_id)
    except CronError as exc:
        raise ValidationError(f"{field_prefix}cronExpression", f"{field_prefix}cronExpression: {exc.message}") from None


class AgentService:
    def __init__(self, container) -> None:
        self.c = container
        self.s = container.settings

    def now(self) -> float:
        return self.c.clock.now().timestamp()

    # --- agents ---------------------------------------------------------------------
    def _check_config(self, tenant_id: str, kind: str, config) -> dict:
        return check_config(kind, config, tenant_id, self.c.agent_policy)

    def create(self, tenant_id: str, body: dict) -> dict:
        body = validate(body, schemas.AGENT_CREATE)
        config = self._check_config(tenant_id, body["kind"], body.get("config"))
        now = self.now()
        agent = Agent(
            tenant_id=tenant_id,
            agent_id=new_agent_id(),
            name=body["name"],
            kind=body["kind"],
            config=config,
            description=body.get("description"),
            timeout_seconds=body.get("timeoutSeconds", DEFAULT_TIMEOUT),
            max_retries=body.get("maxRetries", self.s.max_retries),
            created_at=now,
            updated_at=now,
        )
        self.c.agents.create(agent)
        return agent_json(agent, None)

    def get_agent(self, tenant_id: str, agent_id: str) -> Agent:
        if not agent_id or len(agent_id) > 100:
            raise NotFound(f"agent {agent_id!r} not found")
        agent = self.c.agents.get(tenant_id, agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id!r} not found")
        return agent

    def agent_view(self, agent: Agent) -> dict:
        return agent_json(agent, self._schedule_view(agent) if agent.schedule else None)

    def get(self, tenant_id: str, agent_id: str) -> dict:
        return self.agent_view(self.get_agent(tenant_id, agent_id))

    def list(self, tenant_id: str, limit: int, token: str | None) -> dict:
        items, nxt = self.c.agents.list(tenant_id, limit, token)
        return {"items": [self.agent_view(a) for a in items], "nextToken": nxt}

    def patch(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        body = validate(body, schemas.AGENT_PATCH)

        def change(agent: Agent) -> Agent:
            kind = body.get("kind", agent.kind)
            config = body.get("config", agent.config if kind == agent.kind else None)
            if "kind" in body or "config" in body:
                config = self._check_config(tenant_id, kind, config)
            return agent.with_(
                name=body.get("name", agent.name),
                kind=kind,
                config=config,
                description=body.get("description", agent.description),
                timeout_seconds=body.get("timeoutSeconds", agent.timeout_seconds),
                max_retries=body.get("maxRetries", agent.max_retries),
                updated_at=self.now(),
            )

        return self.agent_view(self._mutate(tenant_id, agent_id, change))

    def delete(self, tenant_id: str, agent_id: str) -> None:
        self.get_agent(tenant_id, agent_id)
        if not self.c.agents.delete(tenant_id, agent_id):
            raise NotFound(f"agent {agent_id!r} not found")

    def _mutate(self, tenant_id: str, agent_id: str, change) -> Agent:
        """Read, change, write under the condition that the tick did not move the schedule
        meanwhile; on a lost race read again (a normal outcome, not an error)."""
        for _ in range(5):
            agent = self.get_agent(tenant_id, agent_id)
            updated = change(agent)
            try:
                self._save(updated, must_exist=True, expected=agent)
                return updated
            except ConditionFailed:
                continue
        raise Conflict(f"agent {agent_id!r} is changing too fast; try again")

    def _save(self, agent: Agent, must_exist: bool, expected: Agent | None = None) -> None:
        shard = at = None
        spec = agent.schedule
        if spec is not None and spec.enabled and agent.next_run_at is not None:
            shard = due_shard(agent.agent_id, self.s.due_shards)
            at = agent.next_run_at + jitter_offset(agent.agent_id, agent.next_run_at, spec.jitter_seconds)
        try:
            self.c.agents.save(
                agent, due_shard=shard, due_at=at, must_exist=must_exist,
                expect_next_run_at=expected.next_run_at if expected else None, check_next_run_at=expected is not None,
            )
        except ConditionFailed:
            if expected is not None and self.c.agents.get(agent.tenant_id, agent.agent_id) is not None:
                raise  # the schedule moved meanwhile: the caller reads again
            raise NotFound(f"agent {agent.agent_id!r} not found") from None

    # --- schedules --------------------------------------------------------------------
    def _spec_from_body(self, body: dict, agent: Agent, previous: ScheduleSpec | None, prefix: str = "") -> tuple[ScheduleSpec, CronSchedule]:
        body = validate(body, schemas.SCHEDULE_PUT, path="body" if not prefix else prefix.rstrip("."))
        tz = body.get("timezone") or "UTC"
        cron = parse_schedule_expression(body["cronExpression"], tz, agent.agent_id, prefix)
        start_at = _opt_time(body.get("startAt"), f"{prefix}startAt")
        end_at = _opt_time(body.get("endAt"), f"{prefix}endAt")
        if start_at is not None and end_at is not None and end_at <= start_at:
            raise ValidationError(f"{prefix}endAt", f"{prefix}endAt must be after startAt")
        now = self.now()
        spec = ScheduleSpec(
            cron_expression=cron.expression,
            timezone=tz,
            priority=Priority(body.get("priority", "NORMAL")),
            enabled=body.get("enabled", True),
            catchup=CatchupPolicy(body.get("catchup", "LATEST")),
            catchup_window_seconds=body.get("catchupWindowSeconds", 3600),
            overlap_policy=OverlapPolicy(body.get("overlapPolicy", "SKIP")),
            start_at=start_at,
            end_at=end_at,
            jitter_seconds=body.get("jitterSeconds", 0),
            created_at=previous.created_at if previous else now,
            updated_at=now,
            disabled_periods=() if body.get("enabled", True) else ((now, None),),
        )
        return spec, cron

    def first_fire(self, spec: ScheduleSpec, cron: CronSchedule, after: float) -> float | None:
        after = max(after, (spec.start_at - 0.001) if spec.start_at else after)
        t = cron.next_after(datetime.fromtimestamp(after, tz=timezone.utc)).timestamp()
        if spec.end_at is not None and t > spec.end_at:
            return None
        return t

    def put_schedule(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        built = {}

        def change(agent: Agent) -> Agent:
            spec, cron = self._spec_from_body(body, agent, agent.schedule)
            built["cron"] = cron
            return agent.with_(schedule=spec, next_run_at=self.first_fire(spec, cron, self.now()), updated_at=self.now())

        updated = self._mutate(tenant_id, agent_id, change)
        self.c.dispatcher.dispatch_soon(self.c.agents.get(tenant_id, agent_id) or updated)
        agent, cron = updated, built["cron"]
        view = self._schedule_view(updated, cron)
        view["warnings"] = schedule_warnings(cron, self.c.clock.now(), agent.timeout_seconds)
        view["conflicts"] = self._conflicts_after_save(tenant_id, updated)
        return view

    def _conflicts_after_save(self, tenant_id: str, agent: Agent) -> builtins.list:  # `list` is a method here
        try:
            from chalicelib.services.conflicts import conflicts_involving
        except ImportError:  # pragma: no cover - conflicts arrive with schedule management
            return []
        return conflicts_involving(self.c, tenant_id, agent.agent_id)

    def _schedule_view(self, agent: Agent, cron: CronSchedule | None = None) -> dict:
        spec = agent.schedule
        assert spec is not None, "only a scheduled agent has a schedule view"
        cron = cron or CronSchedule.parse(spec.cron_expression, spec.timezone, hash_id=agent.agent_id)
        runs: list[float] = []
        nxt = agent.next_run_at if spec.enabled else None
        if nxt is not None:
            runs = [nxt]
            for t in cron.iter_after(datetime.fromtimestamp(nxt, tz=timezone.utc)):
                if len(runs) >= 5 or (spec.end_at is not None and t.timestamp() > spec.end_at):
                    break
                runs.append(t.timestamp())
        return schedule_json(agent, spec, nxt, runs)

    def get_schedule(self, tenant_id: str, agent_id: str) -> dict:
        agent = self.get_agent(tenant_id, agent_id)
        if agent.schedule is None:
            raise NotFound(f"agent {agent_id!r} has no schedule")
        return self._schedule_view(agent)

    def delete_schedule(self, tenant_id: str, agent_id: str) -> None:
        def change(agent: Agent) -> Agent:
            if agent.schedule is None:
                raise NotFound(f"agent {agent_id!r} has no schedule")
            return agent.with_(schedule=None, next_run_at=None, updated_at=self.now())

        self._mutate(tenant_id, agent_id, change)

    def set_enabled(self, tenant_id: str, agent_id: str, enabled: bool) -> dict:
        def change(agent: Agent) -> Agent:
            if agent.schedule is None:
                raise NotFound(f"agent {agent_id!r} has no schedule")
            spec = agent.schedule
            if spec.enabled == enabled:
                return agent
            now = self.now()
            periods = close_period(spec.disabled_periods, now) if enabled else add_period_start(spec.disabled_periods, now)
            new_spec = ScheduleSpec(**{**spec.__dict__, "enabled": enabled, "updated_at": now, "disabled_periods": periods})
            next_run_at = agent.next_run_at
            if enabled and next_run_at is None:
                cron = CronSchedule.parse(spec.cron_expression, spec.timezone, hash_id=agent_id)
                next_run_at = self.first_fire(new_spec, cron, now)
            return agent.with_(schedule=new_spec, next_run_at=next_run_at, updated_at=now)

        updated = self._mutate(tenant_id, agent_id, change)
        if enabled:
            self.c.dispatcher.dispatch_soon(self.c.agents.get(tenant_id, agent_id) or updated)
        return self._schedule_view(updated)

    def validate_expression(self, body: dict) -> dict:
        body = validate(body, schemas.VALIDATE)
        tz = body.get("timezone") or "UTC"
        cron = parse_schedule_expression(body["cronExpression"], tz, body.get("agentId"))
        start = parse_datetime(body["from"], "from") if "from" in body else self.c.clock.now()
        runs = cron.next_n(start, body.get("count", 5))
        zone = parse_timezone(tz)
        return {
            "valid": True,
            "cronExpression": cron.expression,
            "timezone": tz,
            "nextRuns": [r.astimezone(zone).isoformat() for r in runs],
            "warnings": schedule_warnings(cron, start, body.get("timeoutSeconds")),
        }

    # --- runs -------------------------------------------------------------------------
    def run_now(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        body = validate(body, schemas.RUN_NOW)
        agent = self.get_agent(tenant_id, agent_id)
        default = agent.schedule.priority if agent.schedule else Priority.NORMAL
        priority = Priority(body["priority"]) if "priority" in body else default
        s = self.c.dispatcher.submit_manual(agent, priority, body.get("input"))
        return {"sessionId": s.session_id, "status": "QUEUED", "agentId": agent_id, "priority": priority.value}

    def list_sessions(self, tenant_id: str, agent_id: str, limit: int, token: str | None, status: str | None) -> dict:
        self.get_agent(tenant_id, agent_id)
        if status is not None and status not in SessionStatus.__members__:
            raise ValidationError("status", f"status must be one of {', '.join(SessionStatus.__members__)}")
        items, nxt = self.c.sessions.list(agent_id, limit, token, status)
        return {"items": [session_json(s) for s in items if s.tenant_id == tenant_id], "nextToken": nxt}

    def get_session_record(self, tenant_id: str, agent_id: str, session_id: str) -> Session:
        self.get_agent(tenant_id, agent_id)
        s = self.c.sessions.get(agent_id, session_id) if 0 < len(session_id) <= 100 else None
        if s is None or s.tenant_id != tenant_id:
            raise NotFound(f"session {session_id!r} not found")
        return s

    def get_session(self, tenant_id: str, agent_id: str, session_id: str) -> dict:
        return session_json(self.get_session_record(tenant_id, agent_id, session_id))

    def cancel(self, tenant_id: str, agent_id: str, session_id: str) -> dict:
        for _ in range(5):
            s = self.get_session_record(tenant_id, agent_id, session_id)
            if s.status.finished:
                raise Conflict(f"session {session_id!r} already finished ({s.status.value})")
            done = self.c.dispatcher.cancel(s)
            if done is not None:
                return session_json(done)
        raise Conflict(f"session {session_id!r} is changing too fast; try again")

    # --- DLQ --------------------------------------------------------------------------
    def list_dlq(self, tenant_id: str, admin: bool, limit: int, token: str | None) -> dict:
        items, nxt = self.c.sessions.list_dlq(None if admin else tenant_id, limit, token)
        return {
            "items": [
                {
                    "sessionId": s.session_id,
                    "agentId": s.agent_id,
                    "tenantId": s.tenant_id,
                    "error": s.error,
                    "attempt": s.attempt,
                    "failedAt": iso(s.failed_at),
                }
                for s in items
            ],
            "nextToken": nxt,
        }

    def redrive(self, tenant_id: str, admin: bool, body: dict) -> dict:
        body = validate(body, schemas.REDRIVE)
        from chalicelib.services.dlq import redrive

        n = redrive(self.c, None if admin else tenant_id, body.get("sessionIds"))
        return {"redriven": n}


def _opt_time(value, field: str) -> float | None:
    if value is None:
        return None
    return _utc(parse_datetime(value, field))
