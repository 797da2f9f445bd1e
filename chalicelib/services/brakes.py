"""Brakes that act by themselves, and the budget checks of the run path.

- After a run ends: ``pauseAfterFailures`` consecutive DEAD runs disable the agent's schedule
  (``disabledReason: CONSECUTIVE_FAILURES``, a history entry by ``system``, ``schedule:changed``
  and ``agent:alert``); a budget with ``onExhausted: PAUSE`` that is used up disables it
  (``BUDGET_EXHAUSTED``). Both go through the ordinary schedule write (conditional, with history).
- Budgets: the tick skips the day's later fires of an agent whose budget is used up; run-now is
  refused (429); ``budgetUsage`` shows the day's counters.
- Bulk cancel over the caller's own runs.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from chalicelib.domain import events as ev
from chalicelib.domain.brakes import SYSTEM, DisabledReason, pause_for_failures
from chalicelib.domain.budget import DayUsage, OnExhausted, budget_day, day_end, exhausted
from chalicelib.domain.model import ACTIVE_STATUSES, SessionStatus
from chalicelib.domain.records import Agent, Session
from chalicelib.errors import BudgetExhausted, SchedulerError, ValidationError

log = logging.getLogger("agent_scheduler.brakes")


class _Unchanged(Exception):
    """The schedule no longer needs the change (gone, already disabled, reset meanwhile)."""


# --- after a run --------------------------------------------------------------------------
def after_run(c, s: Session, dead: bool, charge, now: float) -> None:
    """The brakes a finished run may pull. Never raises: the run's outcome is already written."""
    try:
        agent = c.agents.get_cached(s.tenant_id, s.agent_id, now)
        if agent is None or agent.schedule is None:
            return
        if dead and agent.pause_after_failures is not None:
            _pause_for_failures(c, s, now)
        if charge is not None and agent.budget is not None and agent.budget.on_exhausted is OnExhausted.PAUSE:
            usage = c.runs.budget_usage(s.tenant_id, s.agent_id, charge.day)
            limit = exhausted(agent.budget, usage)
            if limit is not None:
                disable_schedule(c, s.tenant_id, s.agent_id, DisabledReason.BUDGET_EXHAUSTED, now,
                                 still=lambda a: a.budget is not None and a.budget.on_exhausted is OnExhausted.PAUSE)
    except SchedulerError:
        log.exception("brakes not applied after the run", extra={"session_id": s.session_id})


def _pause_for_failures(c, s: Session, now: float) -> None:
    fresh = c.agents.get(s.tenant_id, s.agent_id)  # the counts the finish transaction just wrote
    if fresh is None or fresh.schedule is None:
        return
    if not pause_for_failures(fresh.pause_after_failures, fresh.consecutive_failures, fresh.schedule.enabled):
        return

    def still(a: Agent) -> bool:
        return pause_for_failures(a.pause_after_failures, a.consecutive_failures, True)

    if disable_schedule(c, s.tenant_id, s.agent_id, DisabledReason.CONSECUTIVE_FAILURES, now, still=still):
        n = fresh.consecutive_failures
        text = (f"agent {s.agent_id} ended DEAD {n} runs in a row (pauseAfterFailures "
                f"{fresh.pause_after_failures}); its schedule is disabled until someone enables it")
        c.events.publish(s.tenant_id, s.agent_id, ev.alert(
            s.agent_id, s.session_id, s.attempt, now=now, consecutive_failures=n, message=text))


def disable_schedule(c, tenant_id: str, agent_id: str, reason: DisabledReason, now: float, *, still) -> bool:
    """Disable the agent's schedule as the system, with ``reason``, if it is enabled and
    ``still(agent)`` holds on a fresh read. True when this call disabled it."""
    svc = c.agent_service

    def change(agent: Agent) -> Agent:
        if agent.schedule is None or not agent.schedule.enabled or not still(agent):
            raise _Unchanged()
        return svc.with_enabled(agent, False, now, reason=reason.value)

    try:
        svc._mutate(tenant_id, agent_id, change, changed_by=SYSTEM)
    except _Unchanged:
        return False
    log.warning("schedule disabled by the system", extra={"agent_id": agent_id, "reason": reason.value})
    return True


# --- budgets --------------------------------------------------------------------------------
def day_usage(c, agent: Agent, now: float) -> DayUsage | None:
    """The agent's counters for today in its budget's zone (None without a budget)."""
    if agent.budget is None:
        return None
    return c.runs.budget_usage(agent.tenant_id, agent.agent_id, budget_day(now, agent.budget.timezone))


def check_run_now(c, agent: Agent, now: float) -> None:
    """Run-now of an agent whose budget is used up today: 429 BUDGET_EXHAUSTED."""
    budget = agent.budget
    usage = day_usage(c, agent, now)
    if budget is None or usage is None:
        return
    limit = exhausted(budget, usage)
    if limit is None:
        return
    until = datetime.fromtimestamp(day_end(usage.day, budget.timezone), tz=timezone.utc)
    raise BudgetExhausted(
        f"agent {agent.agent_id!r} has used its budget for {usage.day} ({limit} reached); "
        f"it can run again from {until.isoformat()}",
        limit=limit, day=usage.day, retry_at=until.isoformat())


def budget_usages(c, agents: list[Agent], now: float) -> dict:
    """(tenant, agent) -> today's counters, for the agents with a budget (one batch read)."""
    wanted = [(a.tenant_id, a.agent_id, budget_day(now, a.budget.timezone)) for a in agents if a.budget is not None]
    return c.runs.budget_usages(wanted) if wanted else {}


def budget_usage_json(c, agent: Agent, now: float) -> dict | None:
    usage = day_usage(c, agent, now)
    return None if usage is None else usage.to_json()


# --- bulk cancel ------------------------------------------------------------------------------
CANCELLABLE = (SessionStatus.QUEUED, SessionStatus.RETRYING, SessionStatus.RUNNING)
MAX_BULK_AGENTS = 100
MAX_BULK_SESSIONS_PER_AGENT = 1000


def bulk_cancel(c, tenant_id: str, agent_ids: list[str] | None, statuses: list[str] | None,
                scheduled_before: float | None) -> int:
    """Cancel the caller's own unfinished runs that match every filter given; returns how many.

    ``agent_ids`` None: every agent of the tenant. A run that moves meanwhile is looked at once
    more; a run that finished meanwhile, or a running run already asked to stop, is left alone."""
    wanted = {SessionStatus(x) for x in statuses} if statuses else set(CANCELLABLE)
    if agent_ids is None:
        agents = [a.agent_id for a in c.agents.iter_tenant(tenant_id)]
    else:
        agents = []
        for agent_id in dict.fromkeys(agent_ids):
            a = c.agents.get(tenant_id, agent_id)
            if a is None:
                raise ValidationError("agentIds", f"agentIds: agent {agent_id!r} not found")
            agents.append(a.agent_id)
    n = 0
    for agent_id in agents:
        for s in c.sessions.active(agent_id, MAX_BULK_SESSIONS_PER_AGENT):
            if s.tenant_id != tenant_id or s.status not in wanted or s.status not in ACTIVE_STATUSES:
                continue
            if scheduled_before is not None and not s.scheduled_for < scheduled_before:
                continue
            if s.cancel_requested:  # already told to stop (an earlier cancel): not counted again
                continue
            for _ in range(3):
                done = c.dispatcher.cancel(s)
                if done is not None:
                    n += 1
                    break
                s = c.runs.get(s.agent_id, s.session_id)
                if s is None or s.status.finished or s.status not in wanted:
                    break
    return n
