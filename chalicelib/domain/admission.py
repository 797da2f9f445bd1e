"""Admission control: which waiting runs get a slot now. Pure.

Slots are *leases*: each admitted run holds one until it finishes or until the
lease expires (fire time + timeout + margin), so a worker that died cannot hold
a slot forever. The order is priority (CRITICAL first), then the time the run
became eligible, then id; running plus queued never exceeds the cap; nothing
is admitted while the scheduler is paused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from chalicelib.domain.model import Priority

MAX_SQS_DELAY = 900
START_SLACK_SECONDS = 1


@dataclass(frozen=True)
class Lease:
    session_id: str
    tenant_id: str
    agent_id: str
    fire_at: float  # when the run should start
    expires_at: float

    def to_item(self) -> dict:
        return {"t": self.tenant_id, "a": self.agent_id, "f": self.fire_at, "e": self.expires_at}

    @classmethod
    def from_item(cls, session_id: str, item: Mapping) -> "Lease":
        return cls(session_id, str(item["t"]), str(item["a"]), float(item["f"]), float(item["e"]))


@dataclass(frozen=True)
class Candidate:
    """A run waiting for a slot (new from this tick, or already pending)."""

    session_id: str
    tenant_id: str
    agent_id: str
    priority: Priority
    eligible_at: float  # scheduled time, or retry time, or request time
    timeout_seconds: float
    attempt: int = 1  # the attempt the run will make when admitted
    backfill: bool = False  # a backfill run waits behind every live run of its priority

    @property
    def order_key(self) -> tuple:
        return (self.priority.rank, self.backfill, self.eligible_at, self.session_id)


@dataclass(frozen=True)
class Admit:
    candidate: Candidate
    delay_seconds: int  # SQS DelaySeconds: whole seconds until the run's time
    lease: Lease


@dataclass(frozen=True)
class AdmissionPlan:
    admit: tuple[Admit, ...]
    waiting: tuple[Candidate, ...]  # in admission order
    expired: tuple[str, ...]  # leases past their expiry, to drop
    free_slots: int


def live_leases(leases: Iterable[Lease], now: float) -> list[Lease]:
    return [lease for lease in leases if lease.expires_at > now]


def plan_admission(
    candidates: Iterable[Candidate],
    leases: Iterable[Lease],
    *,
    cap: int,
    now: float,
    lookahead: float,
    lease_margin: float,
    paused: bool = False,
) -> AdmissionPlan:
    leases = list(leases)
    live = live_leases(leases, now)
    held = {lease.session_id for lease in live}
    expired = tuple(lease.session_id for lease in leases if lease.expires_at <= now)
    ordered = sorted(
        (c for c in {c.session_id: c for c in candidates}.values() if c.session_id not in held),
        key=lambda c: c.order_key,
    )
    free = max(0, cap - len(live))
    admit: list[Admit] = []
    waiting: list[Candidate] = []
    for c in ordered:
        if not paused and len(admit) < free and c.eligible_at <= now + lookahead:
            # One second of slack: the message becomes visible 1-2 s before the run's time
            # and the worker waits out the remainder, so receive and claim never make it late.
            delay = min(MAX_SQS_DELAY, max(0, math.floor(c.eligible_at - now) - START_SLACK_SECONDS))
            start = max(now, c.eligible_at)
            lease = Lease(
                c.session_id,
                c.tenant_id,
                c.agent_id,
                c.eligible_at,
                start + c.timeout_seconds + lease_margin,
            )
            admit.append(Admit(c, delay, lease))
        else:
            waiting.append(c)
    return AdmissionPlan(tuple(admit), tuple(waiting), expired, free)
