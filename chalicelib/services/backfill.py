"""Backfill: run the fires of a past window that never ran.

Each fire becomes a waiting (PENDING) session with the *same* deterministic id a
scheduled run of that fire gets (``scheduled_session_id``), created with a
conditional put, so a fire runs once whether the tick, a catch-up or a backfill
got there first. A fire whose session exists is left alone, except a SKIPPED one
(the fire never ran: the tick recorded why), which becomes the backfill run,
again conditionally. The runs are then admitted by the same admission as every
run (run-now's path: the session written PENDING, the agent's active runs
counted, ``admit_pending``); a backfill run waits behind every live run of its
priority (see ``pending_rank``).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from chalicelib.adapters.errors import aws_call, translate
from chalicelib.adapters.tables import SessionModel
from chalicelib.domain.expressions import FireTimes
from chalicelib.domain.ids import scheduled_session_id
from chalicelib.domain.model import Priority, SessionStatus, Trigger
from chalicelib.domain.records import STAGE_PENDING, Agent, Session
from chalicelib.domain.schedule import ScheduleSpec
from chalicelib.errors import ConditionFailed

log = logging.getLogger("agent_scheduler.backfill")

MAX_WINDOW_SECONDS = 31 * 86400
WRITERS = 8


@dataclass(frozen=True)
class BackfillResult:
    created: tuple[str, ...]
    skipped: int


def window_fires(spec: ScheduleSpec, fires: FireTimes, start: float, end: float, limit: int) -> list[float]:
    """The schedule's fire times ``t`` with ``start <= t < end`` that may run (inside
    startAt/endAt, not on an excluded date), at most ``limit``. Pure."""
    out: list[float] = []
    excluded = spec.excluded
    lo = start if spec.start_at is None else max(start, spec.start_at)
    for t in excluded.included_after(fires, datetime.fromtimestamp(lo - 0.001, tz=timezone.utc)):
        f = t.timestamp()
        if f >= end or (spec.end_at is not None and f > spec.end_at):
            break
        out.append(f)
        if len(out) >= limit:
            break
    return out


def backfill_session(agent: Agent, fire: float, priority: Priority, now: float) -> Session:
    return Session(
        agent_id=agent.agent_id,
        session_id=scheduled_session_id(agent.agent_id, fire),
        tenant_id=agent.tenant_id,
        status=SessionStatus.QUEUED,
        trigger=Trigger.BACKFILL,
        priority=priority,
        scheduled_for=fire,
        queued_at=now,
        max_attempts=agent.max_retries + 1,
        timeout_seconds=agent.timeout_seconds,
        stage=STAGE_PENDING,
    )


def submit_backfill(container, agent: Agent, fire_times: Sequence[float], priority: Priority,
                    existing: dict[str, Session]) -> BackfillResult:
    """Create the backfill runs of ``fire_times`` (``existing``: their sessions already read)."""
    now = container.clock.now().timestamp()
    sessions = container.sessions

    def create(fire: float) -> str | None:
        s = backfill_session(agent, fire, priority, now)
        old = existing.get(s.session_id)
        if old is not None and old.status is not SessionStatus.SKIPPED:
            return None
        cond = (SessionModel.session_id.does_not_exist() if old is None
                else SessionModel.status == SessionStatus.SKIPPED.value)
        try:
            with aws_call("create backfill run"):
                try:
                    sessions.item(s).save(condition=cond)
                except Exception as exc:
                    raise translate(exc, "create backfill run") from exc
        except ConditionFailed:
            return None  # the tick (or another backfill) got there first: that fire has its run
        return s.session_id

    if len(fire_times) <= 1:
        results = [create(f) for f in fire_times]
    else:
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(fire_times))) as pool:
            results = list(pool.map(create, fire_times))
    created = tuple(sid for sid in results if sid is not None)
    if created:
        container.agents.add_active_runs(agent.tenant_id, agent.agent_id, len(created))
        container.dispatcher.admit_pending()
        log.info("backfill", extra={"agent_id": agent.agent_id, "backfill_created": len(created)})
    return BackfillResult(created, len(fire_times) - len(created))
