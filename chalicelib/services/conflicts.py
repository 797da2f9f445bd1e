"""Schedule conflicts of one tenant: read its fleet and run history, ask the pure analysis.

The rules are in :mod:`chalicelib.domain.conflicts`; this module only reads
(the tenant's agents with one Query, at most ``HISTORY_RUNS`` recent sessions
per agent) and turns the result into API JSON. Only the caller's own agents are
ever read, so a conflict can never name another tenant's agent.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

from chalicelib.adapters.dynamo import agent_from_item
from chalicelib.adapters.errors import aws_call
from chalicelib.adapters.tables import AgentTenantModel, SessionModel
from chalicelib.api.serialize import iso
from chalicelib.domain.conflicts import (
    DEFAULT_WINDOW_HOURS,
    HISTORY_RUNS,
    Conflict,
    ConflictReport,
    FleetSchedule,
    expected_run_seconds,
    find_conflicts,
)
from chalicelib.domain.cron import CronError
from chalicelib.domain.model import SessionStatus
from chalicelib.domain.records import Agent

log = logging.getLogger("agent_scheduler.conflicts")

HISTORY_READERS = 8  # concurrent history queries for a large fleet


def recent_durations_ms(tenant_id: str, agent_id: str, limit: int = HISTORY_RUNS) -> list[int]:
    """``durationMs`` of the successful runs among the agent's ``limit`` most recent sessions.

    A read-only query on the sessions table (newest first, projected). It belongs
    in ``SessionStore``; it lives here until the store grows the method.
    """
    m = SessionModel
    with aws_call("read run history"):
        items = m.query(
            agent_id,
            scan_index_forward=False,
            limit=limit,
            attributes_to_get=["tenant_id", "status", "duration_ms"],
        )
        return [
            int(i.duration_ms)
            for i in items
            if i.tenant_id == tenant_id and i.status == SessionStatus.SUCCEEDED.value and i.duration_ms is not None
        ]


def tenant_agents_consistent(tenant_id: str) -> list[Agent]:
    """The tenant's agents with a strongly consistent Query, so a schedule saved a
    moment ago is seen (``AgentStore.iter_tenant`` reads eventually consistent)."""
    with aws_call("list agents"):
        return [agent_from_item(m) for m in AgentTenantModel.query(tenant_id, consistent_read=True)]


def load_fleet(container, tenant_id: str, agents: Iterable[Agent] | None = None) -> list[FleetSchedule]:
    """The tenant's enabled schedules with each agent's expected run time."""
    if agents is None:
        agents = tenant_agents_consistent(tenant_id)
    scheduled = [a for a in agents if a.tenant_id == tenant_id and a.schedule is not None and a.schedule.enabled]
    if not scheduled:
        return []
    ids = [a.agent_id for a in scheduled]
    if len(ids) == 1:
        histories = [recent_durations_ms(tenant_id, ids[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(HISTORY_READERS, len(ids))) as pool:
            histories = list(pool.map(lambda aid: recent_durations_ms(tenant_id, aid), ids))
    fleet: list[FleetSchedule] = []
    for agent, durations in zip(scheduled, histories):
        assert agent.schedule is not None  # `scheduled` holds scheduled agents only
        expected, from_history = expected_run_seconds(durations, agent.timeout_seconds)
        try:
            fleet.append(FleetSchedule.from_spec(
                agent.agent_id, agent.schedule, expected, from_history=from_history, label=agent.name,
            ))
        except CronError:  # a stored expression that no longer parses: nothing to analyse
            log.warning("unparseable stored schedule", extra={"agent_id": agent.agent_id})
    return fleet


def analyze(container, tenant_id: str, start: float, hours: int = DEFAULT_WINDOW_HOURS,
            fleet: Sequence[FleetSchedule] | None = None) -> ConflictReport:
    if fleet is None:
        fleet = load_fleet(container, tenant_id)
    return find_conflicts(fleet, start=start, end=start + hours * 3600, cap=container.settings.max_concurrent_agents)


def conflict_json(c: Conflict) -> dict:
    out: dict = {
        "type": c.type.value,
        "at": iso(c.at, c.zone),
        "agentIds": list(c.agent_ids),
        "message": c.message,
        "occurrences": c.occurrences,
    }
    if c.occurrences > 1 and c.last_at is not None:
        out["lastAt"] = iso(c.last_at, c.zone)
    if c.waits:
        out["waits"] = [
            {"agentId": w.agent_id, "priority": w.priority.value, "waitSeconds": round(w.seconds, 3)} for w in c.waits
        ]
    if c.suggestion is not None:
        out["suggestion"] = {
            "text": c.suggestion.text,
            "changes": [
                {
                    "agentId": ch.agent_id,
                    "cronExpression": ch.suggested,
                    "timezone": ch.timezone,
                    "currentCronExpression": ch.cron_expression,
                }
                for ch in c.suggestion.changes
            ],
        }
    return out


def report_json(r: ConflictReport) -> dict:
    return {
        "from": iso(r.start),
        "to": iso(r.end),
        "analyzedUntil": iso(r.analyzed_until),
        "maxConcurrentAgents": r.cap,
        "hotMinuteThreshold": r.hot_threshold,
        "truncated": r.truncated,
        "conflicts": [conflict_json(c) for c in r.conflicts],
    }


def conflicts_involving(container, tenant_id: str, agent_id: str) -> list[dict]:
    """Save-time warnings: the next 24 h's conflicts that include ``agent_id``."""
    fleet = load_fleet(container, tenant_id)
    if not any(e.agent_id == agent_id for e in fleet):
        return []  # disabled, or no schedule: it cannot conflict
    report = analyze(container, tenant_id, container.clock.now().timestamp(), DEFAULT_WINDOW_HOURS, fleet)
    return [conflict_json(c) for c in report.conflicts if agent_id in c.agent_ids]
