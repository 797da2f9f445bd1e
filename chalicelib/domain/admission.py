"""Admission control: which waiting runs get a slot now. Pure.

The global cap is held in small *slot counters* (one per shard of at most
``SLOT_SHARD_SIZE`` slots), each changed by a conditional add, so no single
item grows with the cap. A run holds one slot of one shard from the moment it
is admitted until its session reaches a final state or waits again: the
session itself is the lease (it names its shard and carries
``lease_until``), and the counter changes in the same transaction as the
session, so the two cannot disagree.

The order is priority (CRITICAL first), then the time the run became
eligible, then id; running plus admitted never exceeds the cap; nothing is
admitted while the scheduler is paused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from chalicelib.domain.model import Priority

MAX_SQS_DELAY = 900
START_SLACK_SECONDS = 1
SLOT_SHARD_SIZE = 100  # slots per counter item: cap 5 is one item, cap 1,000 is ten


@dataclass(frozen=True)
class SlotShard:
    """One slot counter: ``used`` of ``limit`` slots are held."""

    name: str
    used: int
    limit: int
    waiting: bool = False  # the hint that runs wait for a slot is set
    audit: tuple[int, int] | None = None  # (used, holders) the reconciler last saw differ

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)


def slot_limits(cap: int, shard_size: int = SLOT_SHARD_SIZE) -> list[tuple[str, int]]:
    """The counter shards for ``cap`` slots and each one's share, as even as possible."""
    n = max(1, math.ceil(cap / shard_size))
    base, extra = divmod(cap, n)
    return [(slot_shard_name(k), base + (1 if k < extra else 0)) for k in range(n)]


def slot_shard_name(k: int) -> str:
    return f"s{k:03d}"


@dataclass(frozen=True)
class Candidate:
    """A run waiting for a slot."""

    session_id: str
    tenant_id: str
    agent_id: str
    priority: Priority
    eligible_at: float  # scheduled time, or retry time, or request time
    timeout_seconds: float
    attempt: int = 1  # the attempt the run will make when admitted
    backfill: bool = False  # a backfill run waits behind every live run of its priority

    @property
    def order_key(self) -> tuple[int, bool, float, str]:
        return (self.priority.rank, self.backfill, self.eligible_at, self.session_id)


@dataclass(frozen=True)
class Admit:
    candidate: Candidate
    delay_seconds: int  # SQS DelaySeconds: whole seconds until the run's time
    shard: str  # the slot counter it takes a slot from
    lease_until: float  # unclaimed after this, the run is sent again


@dataclass(frozen=True)
class AdmissionPlan:
    admit: tuple[Admit, ...]
    waiting: tuple[Candidate, ...]  # in admission order
    free_slots: int

    def by_shard(self) -> dict[str, list[Admit]]:
        out: dict[str, list[Admit]] = {}
        for a in self.admit:
            out.setdefault(a.shard, []).append(a)
        return out

    @property
    def blocked(self) -> bool:
        """Runs that could start now are left waiting for want of a slot."""
        return bool(self.waiting) and len(self.admit) == self.free_slots


def send_delay(eligible_at: float, now: float) -> int:
    """One second of slack: the message becomes visible 1-2 s before the run's time and the
    worker waits out the remainder, so receive and claim never make it late."""
    return min(MAX_SQS_DELAY, max(0, math.floor(eligible_at - now) - START_SLACK_SECONDS))


def ordered(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted({c.session_id: c for c in candidates}.values(), key=lambda c: c.order_key)


def plan_admission(
    candidates: Iterable[Candidate],
    shards: Sequence[SlotShard],
    *,
    now: float,
    lookahead: float,
    claim_grace: float,
    paused: bool = False,
) -> AdmissionPlan:
    """Admit the first runs in admission order into free slots, spreading them over the
    shards (most free first, so counter writes spread as well)."""
    room = {s.name: s.free for s in shards}
    free = sum(room.values())
    admit: list[Admit] = []
    waiting: list[Candidate] = []
    for c in ordered(candidates):
        if paused or len(admit) >= free or c.eligible_at > now + lookahead:
            waiting.append(c)
            continue
        shard = max(room, key=lambda k: (room[k], k))
        room[shard] -= 1
        lease_until = max(now, c.eligible_at) + claim_grace
        admit.append(Admit(c, send_delay(c.eligible_at, now), shard, lease_until))
    return AdmissionPlan(tuple(admit), tuple(waiting), 0 if paused else free)
