"""Schedule management: bulk changes, conflicts over a window, and the fire ledger.

- ``bulk``: every operation is validated and applied on its own and reported in
  order; one bad operation never blocks the others. The agents are read with one
  BatchGet (100 keys a request), the operations are applied in memory (several
  operations on one agent compose), and each changed agent is written once, with
  the same conditional update a single call makes (``AgentService._save`` with the
  agent as read: the write only lands if the tick has not moved ``next_run_at``
  meanwhile; when it has, that agent is read again, its operations re-applied and
  the write retried, so a bulk change never restores an old ``next_run_at``), a few
  at a time. DynamoDB has no batched *conditional update*: BatchWriteItem only puts whole
  items, which would overwrite the run bookkeeping the worker keeps on the agent
  item, and a transaction would make one agent's failure every agent's failure.
  An agent scheduled or enabled whose first fire is inside the lookahead is then
  planned and admitted at once (``Dispatcher.dispatch_soon``), as a single call does.
- ``conflicts``: see :mod:`chalicelib.services.conflicts` (rules in
  :mod:`chalicelib.domain.conflicts`).
- ``fires``: every fire time the schedule implies in a window and what became of
  it, from the sessions the tick wrote (a scheduled session's id is derived from
  the agent and the unjittered fire time) or, for a fire without a session,
  from the schedule's state, the pause periods and the disabled periods.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

from chalicelib.adapters.dynamo import agent_from_item, session_from_item
from chalicelib.adapters.errors import aws_call
from chalicelib.adapters.tables import AgentTenantModel, SessionModel
from chalicelib.api import schemas
from chalicelib.api.serialize import iso
from chalicelib.api.validation import parse_datetime, query_int, validate
from chalicelib.domain.brakes import paused_at
from chalicelib.domain.conflicts import DEFAULT_WINDOW_HOURS, MAX_WINDOW_HOURS
from chalicelib.domain.expressions import FireTimes, fire_times_for
from chalicelib.domain.ids import jitter_offset, scheduled_session_id
from chalicelib.domain.model import Priority, SessionStatus, SkipReason
from chalicelib.domain.records import STAGE_PENDING, Agent, Session
from chalicelib.domain.schedule import Period, ScheduleSpec, skip_reason_for
from chalicelib.errors import ConditionFailed, Conflict, NotFound, SchedulerError, ValidationError
from chalicelib.services import backfill as backfill_service
from chalicelib.services import conflicts as conflict_service

log = logging.getLogger("agent_scheduler.schedules")

MAX_LEDGER_FIRES = 1000
WRITERS = 8  # concurrent agent updates in a bulk request
SAVE_ATTEMPTS = 5  # an agent's write, retried after reading it again when the tick moved it
LEDGER_DEFAULT_SPAN = timedelta(hours=24)
_ID_STAMP = len("20260101T000000000Z")  # scheduled session ids start with the fire's UTC stamp


class ScheduleService:
    def __init__(self, container) -> None:
        self.c = container
        self.s = container.settings

    @property
    def agent_service(self):
        return self.c.agent_service

    def now(self) -> float:
        return self.c.clock.now().timestamp()

    # --- bulk -------------------------------------------------------------------------
    def bulk(self, tenant_id: str, body: dict) -> dict:
        body = validate(body, schemas.BULK)  # malformed as a whole: the request is refused
        ops = body["operations"]
        by_agent: dict[str, list[int]] = {}  # agent id -> its operations, in request order
        for i, op in enumerate(ops):
            by_agent.setdefault(op["agentId"], []).append(i)
        agents = self._get_agents(tenant_id, list(by_agent))
        plans = [self._plan(ops, by_agent[a], a, agents.get(a)) for a in by_agent]
        plans = self._save_all(tenant_id, ops, plans)
        results: list[dict] = [{} for _ in ops]
        for plan in plans:
            for i, result in plan.results.items():
                results[i] = result
        self._dispatch_soon(tenant_id, [p for p in plans if p.dispatch])
        return {"results": results}

    def _plan(self, ops: Sequence[dict], indices: Sequence[int], agent_id: str, read: Agent | None) -> "_AgentPlan":
        """Apply one agent's operations, in order, to the agent as read (``None``: absent)."""
        agent = read
        results: dict[int, dict] = {}
        changed: list[int] = []
        dispatch = False
        for i in indices:
            op = ops[i]
            try:
                if agent is None:
                    raise NotFound(f"agent {agent_id!r} not found")
                updated = self._apply(i, op, agent)
                if updated is not agent:
                    agent = updated
                    changed.append(i)
                results[i] = _ok(op)
                dispatch = dispatch or op["action"] in ("schedule", "enable")
            except SchedulerError as exc:
                results[i] = _failed(op, exc)
        return _AgentPlan(agent_id, read, agent, results, tuple(changed), dispatch and agent is not None)

    def _save_all(self, tenant_id: str, ops: Sequence[dict], plans: list["_AgentPlan"]) -> list["_AgentPlan"]:
        """One conditional update per changed agent, a few at a time; returns the plans as written."""

        def save(plan: _AgentPlan) -> _AgentPlan:
            for _ in range(SAVE_ATTEMPTS):
                if not plan.changed:
                    return plan
                try:
                    saved = any(ops[i]["action"] == "schedule" for i in plan.changed)
                    written = self.agent_service._save(plan.agent, must_exist=True, expected=plan.read, saved=saved)
                    return replace(plan, agent=written)
                except ConditionFailed:
                    pass  # the tick moved the schedule since the read: read again, apply again
                except SchedulerError as exc:  # deleted meanwhile, or a storage error
                    return plan.failed(ops, exc)
                try:
                    fresh = self.agent_service.get_agent(tenant_id, plan.agent_id)
                except NotFound:
                    fresh = None
                except SchedulerError as exc:
                    return plan.failed(ops, exc)
                plan = self._plan(ops, sorted(plan.results), plan.agent_id, fresh)
            return plan.failed(ops, Conflict(f"agent {plan.agent_id!r} is changing too fast; try again"))

        if sum(1 for p in plans if p.changed) <= 1:
            return [save(p) for p in plans]
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(plans))) as pool:
            return list(pool.map(save, plans))

    def _dispatch_soon(self, tenant_id: str, plans: list["_AgentPlan"]) -> None:
        """Plan at once the agents scheduled or enabled whose next fire is inside the lookahead.

        The agents are read again (one BatchGet) for the run bookkeeping the tick and
        the worker keep; an agent whose next fire is further off is left to the tick.
        """
        horizon = self.now() + self.s.lookahead_seconds
        soon = [
            p.agent for p in plans
            if p.agent is not None and p.agent.schedule is not None and p.agent.schedule.enabled
            and p.agent.next_run_at is not None and p.agent.next_run_at <= horizon
        ]
        if not soon:
            return
        try:
            fresh = self._get_agents(tenant_id, [a.agent_id for a in soon])
        except SchedulerError:
            log.exception("could not read the agents to dispatch; the next tick plans them")
            return
        for agent in soon:
            current = fresh.get(agent.agent_id)
            if current is None:
                continue  # deleted meanwhile
            try:
                self.c.dispatcher.dispatch_soon(current)
            except SchedulerError:
                log.exception("dispatch after a bulk change failed; the next tick plans it")

    def _get_agents(self, tenant_id: str, agent_ids: Iterable[str]) -> dict[str, Agent]:
        """One BatchGet (per 100 keys) under the caller's tenant: another tenant's agent is absent."""
        keys = [(tenant_id, a) for a in sorted(agent_ids)]
        if not keys:
            return {}
        with aws_call("get agents"):
            return {
                m.agent_id: agent_from_item(m)
                for m in AgentTenantModel.batch_get(keys, consistent_read=True)
                if m.tenant_id == tenant_id
            }

    def _apply(self, i: int, op: dict, agent: Agent) -> Agent:
        """The agent after operation ``i``; raises the error a single call would give."""
        action = op["action"]
        where = f"operations[{i}].schedule"
        if action == "schedule":
            if "schedule" not in op:
                raise ValidationError(where, f"{where} is required for action 'schedule'")
        elif "schedule" in op:
            raise ValidationError(where, f"{where} is only allowed with action 'schedule'")
        svc = self.agent_service
        now = self.now()
        if action == "schedule":
            spec, cron = svc._spec_from_body(op["schedule"], agent, agent.schedule, prefix=f"{where}.")
            return agent.with_(schedule=spec, next_run_at=svc.first_fire(spec, cron, now), updated_at=now)
        if agent.schedule is None:
            raise NotFound(f"agent {agent.agent_id!r} has no schedule")
        if action == "unschedule":
            return agent.with_(schedule=None, next_run_at=None, updated_at=now)
        return self._with_enabled(agent, action == "enable", now)

    def _with_enabled(self, agent: Agent, enabled: bool, now: float) -> Agent:
        """The same rule as ``AgentService.set_enabled``, without its read and write."""
        return self.agent_service.with_enabled(agent, enabled, now)

    # --- conflicts ----------------------------------------------------------------------
    def conflicts(self, tenant_id: str, from_text: str | None, hours_text: str | None) -> dict:
        start = self.now() if from_text is None else parse_datetime(from_text, "from").timestamp()
        hours = query_int(
            {} if hours_text is None else {"hours": hours_text}, "hours", DEFAULT_WINDOW_HOURS, 1, MAX_WINDOW_HOURS
        )
        report = conflict_service.analyze(self.c, tenant_id, start, hours)
        return conflict_service.report_json(report)

    # --- backfill --------------------------------------------------------------------------
    def backfill(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        """One run per fire of the schedule in ``[from, to)`` that never ran (see
        :mod:`chalicelib.services.backfill`)."""
        body = validate(body, schemas.BACKFILL)
        agent = self.agent_service.get_agent(tenant_id, agent_id)
        spec = agent.schedule
        if spec is None:
            raise NotFound(f"agent {agent_id!r} has no schedule")
        start = parse_datetime(body["from"], "from").timestamp()
        end = parse_datetime(body["to"], "to").timestamp()
        now = self.now()
        if end <= start:
            raise ValidationError("to", "to must be after from")
        if end > now:
            raise ValidationError("to", "to must not be in the future (backfill runs past fires)")
        if end - start > backfill_service.MAX_WINDOW_SECONDS:
            raise ValidationError("to", "to: the window from..to may span at most 31 days")
        max_runs = body.get("maxRuns", 100)
        fire_times = backfill_service.window_fires(spec, fire_times_for(spec, agent_id), start, end, max_runs + 1)
        if len(fire_times) > max_runs:
            raise ValidationError(
                "maxRuns", f"maxRuns: the window holds more than {max_runs} fire times; raise maxRuns (at most 1000) "
                "or choose a shorter window",
            )
        priority = Priority(body["priority"]) if "priority" in body else spec.priority
        existing = self._scheduled_sessions(tenant_id, agent_id, fire_times)
        result = backfill_service.submit_backfill(self.c, agent, fire_times, priority, existing)
        return {"created": len(result.created), "skipped": result.skipped, "sessionIds": list(result.created)}

    # --- fire ledger ---------------------------------------------------------------------
    def fires(self, tenant_id: str, agent_id: str, from_text: str | None, to_text: str | None) -> dict:
        agent = self.agent_service.get_agent(tenant_id, agent_id)
        spec = agent.schedule
        if spec is None:
            raise NotFound(f"agent {agent_id!r} has no schedule")
        now = self.now()
        start = now - LEDGER_DEFAULT_SPAN.total_seconds() if from_text is None else parse_datetime(from_text, "from").timestamp()
        end = now + LEDGER_DEFAULT_SPAN.total_seconds() if to_text is None else parse_datetime(to_text, "to").timestamp()
        if end <= start:
            raise ValidationError("to", "to must be after from")
        fire_times = ledger_fires(fire_times_for(spec, agent_id), spec, start, end, MAX_LEDGER_FIRES + 1)
        if len(fire_times) > MAX_LEDGER_FIRES:
            raise ValidationError(
                "to", f"to: the window holds more than {MAX_LEDGER_FIRES} fire times; choose an earlier to"
            )
        sessions = self._scheduled_sessions(tenant_id, agent_id, fire_times)
        state = self.c.control.state()
        entries = fire_ledger(
            agent_id=agent_id,
            spec=spec,
            fires=fire_times,
            sessions=sessions,
            next_run_at=agent.next_run_at,
            now=now,
            late_tolerance=2 * self.s.lookahead_seconds,
            paused=state.paused,
            pauses=state.pauses,
        )
        tz = spec.timezone
        return {
            "agentId": agent_id,
            "timezone": tz,
            "from": iso(start, tz),
            "to": iso(end, tz),
            "items": [e.to_json(tz) for e in entries],
        }

    def _scheduled_sessions(self, tenant_id: str, agent_id: str, fire_times: Sequence[float]) -> dict[str, Session]:
        """The sessions of these fires: one Query over the id range their UTC stamps span.

        A read-only query on the sessions table; it belongs in ``SessionStore``.
        """
        if not fire_times:
            return {}
        wanted = {scheduled_session_id(agent_id, f) for f in fire_times}
        lo = scheduled_session_id(agent_id, fire_times[0])[:_ID_STAMP]
        hi = scheduled_session_id(agent_id, fire_times[-1])[:_ID_STAMP] + "~"
        out: dict[str, Session] = {}
        with aws_call("list sessions"):
            for m in SessionModel.query(agent_id, SessionModel.session_id.between(lo, hi)):
                if m.session_id in wanted and m.tenant_id == tenant_id:
                    out[m.session_id] = session_from_item(m)
        return out


# --- pure helpers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _AgentPlan:
    """One agent's operations in a bulk request, applied to the agent as read."""

    agent_id: str
    read: Agent | None  # as read (the write's condition); None: absent
    agent: Agent | None  # after the operations
    results: dict[int, dict]  # operation index -> its result
    changed: tuple[int, ...]  # the operations that changed the agent
    dispatch: bool  # a schedule or enable operation succeeded

    def failed(self, ops: Sequence[dict], exc: SchedulerError) -> "_AgentPlan":
        """The write failed: the operations that changed the agent failed with it."""
        results = {**self.results, **{i: _failed(ops[i], exc) for i in self.changed}}
        return _AgentPlan(self.agent_id, self.read, self.read, results, (), False)


def ledger_fires(cron: FireTimes, spec: ScheduleSpec, start: float, end: float, limit: int) -> list[float]:
    """Fire times ``t`` with ``start <= t < end`` since the schedule exists, at most ``limit``.

    Fires before the schedule was created are not its fires; fires outside
    startAt/endAt are listed (the ledger reports them SKIPPED, OUTSIDE_WINDOW).
    """
    after = max(start - 0.001, spec.created_at or start - 0.001)
    out: list[float] = []
    for t in cron.iter_after(datetime.fromtimestamp(after, tz=timezone.utc)):
        f = t.timestamp()
        if f >= end:
            break
        out.append(f)
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True)
class LedgerEntry:
    fire_at: float
    outcome: str  # a session status, SKIPPED, PENDING or UPCOMING
    session_id: str | None = None
    reason: str | None = None

    def to_json(self, tz: str) -> dict:
        out = {"fireTime": iso(self.fire_at, tz), "outcome": self.outcome}
        if self.session_id is not None:
            out["sessionId"] = self.session_id
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def fire_ledger(
    *,
    agent_id: str,
    spec: ScheduleSpec,
    fires: Sequence[float],
    sessions: dict[str, Session],
    next_run_at: float | None,
    now: float,
    late_tolerance: float,
    paused: bool,
    pauses: Sequence[Period],
) -> list[LedgerEntry]:
    """What became of each fire. Pure.

    - a fire with a session: the session's status; SKIPPED with its recorded reason;
      ``PENDING`` while the run is QUEUED waiting for a slot;
    - a fire outside startAt/endAt: SKIPPED, OUTSIDE_WINDOW;
    - a fire the tick has not reached yet (at or after ``next_run_at``) and not yet
      missed: ``UPCOMING``, with a ``reason`` (PAUSED, DISABLED) when, as things
      stand, it would not run;
    - any other fire without a session (the tick skipped it without a record,
      or it was missed): SKIPPED with the reason derived from the pause and
      disabled periods (PAUSED, DISABLED), else CATCHUP_WINDOW.
    """
    out: list[LedgerEntry] = []
    excluded = spec.excluded
    for f in fires:
        sid = scheduled_session_id(agent_id, f)
        s = sessions.get(sid)
        if s is not None:
            if s.status is SessionStatus.SKIPPED:
                reason: str | None = s.skip_reason or skip_reason_for(f, spec, pauses).value
                out.append(LedgerEntry(f, SessionStatus.SKIPPED.value, sid, reason))
            elif s.status is SessionStatus.QUEUED and s.stage == STAGE_PENDING:
                out.append(LedgerEntry(f, "PENDING", sid))
            else:
                out.append(LedgerEntry(f, s.status.value, sid))
            continue
        if (spec.start_at is not None and f < spec.start_at) or (spec.end_at is not None and f > spec.end_at):
            out.append(LedgerEntry(f, SessionStatus.SKIPPED.value, None, SkipReason.OUTSIDE_WINDOW.value))
            continue
        if spec.exclude_dates and excluded.excludes(f):
            out.append(LedgerEntry(f, SessionStatus.SKIPPED.value, None, SkipReason.EXCLUDED_DATE.value))
            continue
        if paused_at(f, spec.paused_until):
            out.append(LedgerEntry(f, SessionStatus.SKIPPED.value, None, SkipReason.PAUSED.value))
            continue
        unprocessed = next_run_at is not None and f >= next_run_at
        scheduled = f + jitter_offset(agent_id, f, spec.jitter_seconds)  # judged like the tick does
        if unprocessed and scheduled >= now - late_tolerance:
            reason = None
            if paused:
                reason = SkipReason.PAUSED.value
            elif not spec.enabled:
                reason = SkipReason.DISABLED.value
            out.append(LedgerEntry(f, "UPCOMING", None, reason))
            continue
        out.append(LedgerEntry(f, SessionStatus.SKIPPED.value, None, skip_reason_for(f, spec, pauses).value))
    return out


def _ok(op: dict) -> dict:
    return {"agentId": op["agentId"], "action": op["action"], "ok": True}


def _failed(op: dict, exc: SchedulerError) -> dict:
    return {"agentId": op["agentId"], "action": op["action"], "ok": False, "status": exc.status_code, "error": exc.to_body()}
