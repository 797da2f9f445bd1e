"""Flow control: the keyed limits each waiting run must pass, and the counters to judge them.

A run's limits come from its tenant (``SCHEDULER_TENANT_MAX_CONCURRENT``), its agent
(``maxConcurrency``, ``throttle``: the agent's implicit pool) and the pools the agent
names; ``domain.admission`` decides with them. Reads per admission round: the agents
(BatchGetItem, cached a few seconds by this process; the tick's own due read primes the
cache), then one BatchGetItem for the pools and every counter, and a second one only when
a pool has a throttle (its window keys depend on the pool's period).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from chalicelib.domain.admission import (
    Candidate,
    PoolLimit,
    Throttle,
    candidate_windows,
    keyed_counters,
    limits_for,
    pool_key,
)
from chalicelib.domain.records import Agent, Session

AGENT_MAX_AGE = 5.0  # seconds an agent read may serve admission (limits changed elsewhere apply after this)


class FlowControl:
    def __init__(self, container) -> None:
        self.c = container
        self.s = container.settings

    @property
    def tenant_cap(self) -> int:
        return self.s.tenant_max_concurrent or self.s.max_concurrent_agents

    def with_limits(self, candidates: Iterable[Candidate], now: float) -> tuple[list[Candidate], dict[str, int]]:
        """The candidates with their keyed limits, and the counters those limits name."""
        cands = list(candidates)
        agents = self.c.agents.get_many_cached({(c.tenant_id, c.agent_id) for c in cands}, now, AGENT_MAX_AGE)
        pool_names = {(c.tenant_id, p) for c in cands for p in _pools(agents.get((c.tenant_id, c.agent_id)))}
        base = [self._limited(c, agents.get((c.tenant_id, c.agent_id)), {}) for c in cands]
        keys = keyed_counters(base, now, self.s.lookahead_seconds) + [pool_key(t, n) for t, n in pool_names]
        pools, counters = self.c.pools.read(pool_names, keys)
        out = [self._limited(c, agents.get((c.tenant_id, c.agent_id)), pools) for c in cands]
        more = [k for c in out for k in candidate_windows(c, now, self.s.lookahead_seconds) if k not in counters]
        if more:
            counters.update(self.c.pools.counters(more))
        return out, counters

    def _limited(self, c: Candidate, agent: Agent | None, pools: Mapping[tuple[str, str], PoolLimit]) -> Candidate:
        thr = None
        if agent is not None and agent.throttle:
            thr = Throttle(int(agent.throttle["limit"]), int(agent.throttle["periodSeconds"]))
        named = [pools[(c.tenant_id, p)] for p in _pools(agent) if (c.tenant_id, p) in pools]
        lims = limits_for(tenant_id=c.tenant_id, agent_id=c.agent_id, tenant_cap=self.tenant_cap,
                          max_concurrency=agent.max_concurrency if agent else None, throttle=thr, pools=named)
        return dataclasses.replace(c, limits=lims)

    def note_reasons(self, reasons: Mapping[str, tuple], sessions: Mapping[str, Session], limit: int = 25) -> None:
        """Write a waiting run's reason only when it changed (a keyed limit's, or back to none)."""
        from chalicelib.domain.admission import WaitingReason

        written = 0
        for sid, (reason, what) in reasons.items():
            s = sessions.get(sid)
            if s is None or written >= limit:
                continue
            value = None if reason in (WaitingReason.CAPACITY, WaitingReason.SCHEDULER_PAUSED) else reason.value
            if value == WaitingReason.RATE_LIMITED.value and what is None:
                continue  # the run's own rate-limited wait is the worker's to write
            if (s.waiting_reason, s.waiting_for) == (value, what if value else None):
                continue
            if self.c.runs.set_waiting_reason(s, value, what if value else None):
                written += 1


def _pools(agent: Agent | None) -> tuple[str, ...]:
    return tuple(agent.pools) if agent is not None else ()
