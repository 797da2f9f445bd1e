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

Keyed limits (one mechanism for tenant caps, an agent's ``maxConcurrency`` and
``throttle``, and pools): each limit is a small counter item named by its key.
A concurrency key counts the runs that hold it (admitted or running); a run
records the keys it holds and gives each back exactly once when it releases its
slot. A throttle key counts starts in one period window (``key#W<period>#<n>``)
and is never given back: it expires with its window. An agent's own limits are
its implicit pool; the tenant's cap is one more key. A run is admitted only
when the global cap and every one of its keys allow; a run that one of its keys
holds back is skipped (with its reason) and the runs behind it are considered.

Fairness: levels of (aged) priority are strict; within a level each free slot
goes to the waiting tenant with the fewest runs holding slots (ties: the oldest
waiting run first), so with equal shares the slots go round-robin across
tenants and one tenant's backlog cannot hold another back. Aging lifts a run
one level per ``aging_seconds`` waited (since it became eligible), never above
HIGH. Backfill runs do not age: a backfill is old on purpose (its fires are in the
past) and must never overtake live runs of a higher priority.
"""
from __future__ import annotations

import enum
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

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
    limits: tuple["KeyLimit", ...] = ()  # the keyed limits it must pass (tenant, agent, pools)

    @property
    def order_key(self) -> tuple[int, bool, float, str]:
        return (self.priority.rank, self.backfill, self.eligible_at, self.session_id)


class WaitingReason(str, enum.Enum):
    """Why a QUEUED or RETRYING run has not started."""

    SCHEDULER_PAUSED = "SCHEDULER_PAUSED"
    CAPACITY = "CAPACITY"
    TENANT_LIMIT = "TENANT_LIMIT"
    AGENT_CONCURRENCY = "AGENT_CONCURRENCY"
    THROTTLED = "THROTTLED"
    POOL_LIMIT = "POOL_LIMIT"
    RATE_LIMITED = "RATE_LIMITED"
    BACKOFF = "BACKOFF"


KEY_PREFIX = "LIM#"


def tenant_key(tenant_id: str) -> str:
    return f"{KEY_PREFIX}T#{tenant_id}"


def agent_key(tenant_id: str, agent_id: str) -> str:
    return f"{KEY_PREFIX}A#{tenant_id}#{agent_id}"


def pool_key(tenant_id: str, pool: str) -> str:
    return f"{KEY_PREFIX}P#{tenant_id}#{pool}"


def window_key(key: str, period_seconds: int, start: float) -> str:
    """The start counter of ``key``'s throttle window that holds the time ``start``."""
    return f"{key}#W{period_seconds}#{int(start // period_seconds)}"


def window_bounds(period_seconds: int, start: float) -> tuple[float, float]:
    n = int(start // period_seconds)
    return n * period_seconds, (n + 1) * period_seconds


@dataclass(frozen=True)
class Throttle:
    limit: int  # starts
    period_seconds: int


@dataclass(frozen=True)
class KeyLimit:
    """One keyed limit of a run: a concurrency cap, a start throttle, a back-off window, or several."""

    key: str  # the concurrency counter's key (throttle windows derive theirs from it)
    reason: WaitingReason  # what the run waits for when this key holds it back
    concurrency: int | None = None
    throttle: Throttle | None = None
    blocked_until: float | None = None  # a shared back-off (a provider's Retry-After): nothing starts before
    waiting_for: str | None = None  # the pool's name, for a pool


def candidate_windows(c: Candidate, now: float, lookahead: float) -> list[str]:
    """The throttle window keys admission may need for ``c`` (its start's window and the next),
    so the caller reads those counters with the others."""
    out = []
    for lim in c.limits:
        if lim.throttle is not None:
            start = max(now, c.eligible_at)
            p = lim.throttle.period_seconds
            out.append(window_key(lim.key, p, start))
            nxt = window_bounds(p, start)[1]
            if nxt <= now + lookahead:
                out.append(window_key(lim.key, p, nxt))
    return out


def aged_rank(c: Candidate, now: float, aging_seconds: float) -> int:
    """The priority rank ``c`` is admitted at: one level higher per ``aging_seconds`` waited
    since it became eligible, never above HIGH (a run already HIGH or CRITICAL keeps its rank;
    a backfill run keeps its rank: it waits behind live runs by design)."""
    rank = c.priority.rank
    if aging_seconds <= 0 or rank <= Priority.HIGH.rank or c.backfill:
        return rank
    waited = now - c.eligible_at
    if waited < aging_seconds:
        return rank
    return max(Priority.HIGH.rank, rank - int(waited // aging_seconds))


def aging_probe_ranks(aging_seconds: float) -> tuple[int, ...]:
    """The stored priorities whose oldest runs admission also reads, beside the head of the
    pending order: the head is read in *stored* priority, so a run that aged past a deep backlog
    of higher stored priority would never be read (and aging would never help it). Only ranks
    below HIGH age; with aging off there is nothing to probe."""
    if aging_seconds <= 0:
        return ()
    return tuple(p.rank for p in Priority if p.rank > Priority.HIGH.rank)


def aged_past_stored(candidates: Iterable[Candidate], now: float, aging_seconds: float) -> list[Candidate]:
    """The candidates that admission ranks above their stored priority (they have aged)."""
    return [c for c in candidates if aged_rank(c, now, aging_seconds) < c.priority.rank]


@dataclass(frozen=True)
class Admit:
    candidate: Candidate
    delay_seconds: int  # SQS DelaySeconds: whole seconds until the run's time
    shard: str  # the slot counter it takes a slot from
    lease_until: float  # unclaimed after this, the run is sent again
    holds: tuple[str, ...] = ()  # concurrency keys it takes (and gives back when it releases its slot)
    starts: tuple[str, ...] = ()  # throttle window keys it counts one start in
    start_at: float | None = None  # later than its eligible time when a throttle window made it wait
    key_limits: tuple[tuple[str, int, float | None], ...] = ()  # (key, limit, expires_at) of holds and starts

    @property
    def starts_at(self) -> float:
        return self.start_at if self.start_at is not None else self.candidate.eligible_at


@dataclass(frozen=True)
class AdmissionPlan:
    admit: tuple[Admit, ...]
    waiting: tuple[Candidate, ...]  # in admission order
    free_slots: int
    reasons: Mapping[str, tuple[WaitingReason, str | None]] = field(default_factory=dict)  # waiting id -> why
    key_limits: Mapping[str, int] = field(default_factory=dict)  # every key an admit takes -> its limit
    key_expiry: Mapping[str, float] = field(default_factory=dict)  # throttle window key -> when it may go

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
    counters: Mapping[str, int] | None = None,
    aging_seconds: float = 0,
) -> AdmissionPlan:
    """Admit waiting runs into free slots, spreading them over the shards (most free first,
    so counter writes spread as well).

    ``counters``: the current value of every key counter the candidates name (concurrency
    keys: runs holding it; throttle windows: starts in it); a key not given is 0. The tenant
    keys' values are also the tenants' shares for fairness.
    """
    counters = counters or {}
    room = {s.name: s.free for s in shards}
    free = sum(room.values())
    admit: list[Admit] = []
    waiting: list[Candidate] = []
    reasons: dict[str, tuple[WaitingReason, str | None]] = {}
    taken: Counter[str] = Counter()  # key -> taken by this plan
    key_limits: dict[str, int] = {}
    key_expiry: dict[str, float] = {}
    until = now + lookahead

    def wait(c: Candidate, reason: WaitingReason, what: str | None = None) -> None:
        waiting.append(c)
        reasons[c.session_id] = (reason, what)

    levels: dict[int, list[Candidate]] = {}
    for c in ordered(candidates):
        if paused:
            wait(c, WaitingReason.SCHEDULER_PAUSED)
        elif c.eligible_at > until:
            waiting.append(c)  # not due yet: no reason to give
        else:
            levels.setdefault(aged_rank(c, now, aging_seconds), []).append(c)

    def share(tenant: str) -> int:
        k = tenant_key(tenant)
        return counters.get(k, 0) + taken[k] + given[tenant]

    given: Counter[str] = Counter()  # admits by tenant without a tenant key (fairness still counts them)
    for rank in sorted(levels):
        queues: dict[str, deque[Candidate]] = {}
        for c in sorted(levels[rank], key=lambda x: (x.backfill, x.eligible_at, x.session_id)):
            queues.setdefault(c.tenant_id, deque()).append(c)
        while queues:
            if len(admit) >= free:
                for q in queues.values():
                    for c in q:
                        wait(c, WaitingReason.CAPACITY)
                queues = {}
                break
            tenant = min(queues, key=lambda t: (share(t), queues[t][0].backfill, queues[t][0].eligible_at,
                                                queues[t][0].session_id))
            c = queues[tenant].popleft()
            if not queues[tenant]:
                del queues[tenant]
            verdict = _check_keys(c, now, until, counters, taken)
            if isinstance(verdict, tuple) and isinstance(verdict[0], WaitingReason):
                wait(c, verdict[0], verdict[1])
                if verdict[0] is WaitingReason.TENANT_LIMIT:  # the rest of the tenant waits too
                    for rest in queues.pop(tenant, ()):
                        wait(rest, WaitingReason.TENANT_LIMIT)
                continue
            holds, starts, start_at, limits_of, expiry = verdict
            for k in holds + starts:
                taken[k] += 1
            if not any(k == tenant_key(c.tenant_id) for k in holds):
                given[c.tenant_id] += 1
            key_limits.update(limits_of)
            key_expiry.update(expiry)
            shard = max(room, key=lambda k: (room[k], k))
            room[shard] -= 1
            at = max(c.eligible_at, start_at) if start_at is not None else c.eligible_at
            lease_until = max(now, at) + claim_grace
            admit.append(Admit(c, send_delay(at, now), shard, lease_until, holds, starts,
                               start_at if start_at is not None and start_at > c.eligible_at else None,
                               tuple((k, limits_of[k], expiry.get(k)) for k in holds + starts)))
    waiting.sort(key=lambda c: c.order_key)
    return AdmissionPlan(tuple(admit), tuple(waiting), 0 if paused else free, reasons, key_limits, key_expiry)


WINDOW_TTL_SLACK = 3600  # a throttle window's counter outlives its window by this much


def _check_keys(c: Candidate, now: float, until: float, counters: Mapping[str, int], taken: Counter[str]) -> tuple[Any, ...]:
    """Whether every keyed limit of ``c`` lets it start: (holds, starts, start_at, limits, expiry),
    or (reason, waiting_for) for the first limit that holds it back. A throttle whose window is
    full lets the run start at the next window when that starts within the lookahead."""

    def full(key: str, limit: int) -> bool:
        return counters.get(key, 0) + taken[key] >= limit

    holds: list[str] = []
    limits_of: dict[str, int] = {}
    for lim in c.limits:
        if lim.blocked_until is not None and lim.blocked_until > now:
            return (WaitingReason.RATE_LIMITED, lim.waiting_for)
        if lim.concurrency is not None:
            if full(lim.key, lim.concurrency):
                return (lim.reason, lim.waiting_for)
            holds.append(lim.key)
            limits_of[lim.key] = lim.concurrency
    first = max(now, c.eligible_at)
    throttles = [(lim, lim.throttle) for lim in c.limits if lim.throttle is not None]
    start = first
    for lim, t in throttles:
        if full(window_key(lim.key, t.period_seconds, first), t.limit):
            start = max(start, window_bounds(t.period_seconds, first)[1])
    starts: list[str] = []
    expiry: dict[str, float] = {}
    for lim, t in throttles:
        key = window_key(lim.key, t.period_seconds, start)
        if start > until or full(key, t.limit):
            return (WaitingReason.THROTTLED if lim.reason is not WaitingReason.POOL_LIMIT else lim.reason,
                    lim.waiting_for)
        starts.append(key)
        limits_of[key] = t.limit
        expiry[key] = window_bounds(t.period_seconds, start)[1] + WINDOW_TTL_SLACK
    return (tuple(holds), tuple(starts), start if start > first else None, limits_of, expiry)


def keyed_counters(candidates: Iterable[Candidate], now: float, lookahead: float) -> list[str]:
    """Every counter key the candidates' limits may need read (concurrency keys and windows)."""
    keys: dict[str, None] = {}
    for c in candidates:
        for lim in c.limits:
            if lim.concurrency is not None or lim.reason is WaitingReason.TENANT_LIMIT:
                keys[lim.key] = None
        for k in candidate_windows(c, now, lookahead):
            keys[k] = None
    return list(keys)


def limits_for(*, tenant_id: str, agent_id: str, tenant_cap: int | None, max_concurrency: int | None,
               throttle: Throttle | None, pools: Sequence["PoolLimit"] = ()) -> tuple[KeyLimit, ...]:
    """A run's keyed limits: its tenant's cap, its agent's own limits (the implicit pool), and
    each named pool's. A pool that no longer exists limits nothing."""
    out: list[KeyLimit] = []
    if tenant_cap is not None:
        out.append(KeyLimit(tenant_key(tenant_id), WaitingReason.TENANT_LIMIT, concurrency=tenant_cap))
    if max_concurrency is not None or throttle is not None:
        out.append(KeyLimit(agent_key(tenant_id, agent_id), WaitingReason.AGENT_CONCURRENCY,
                            concurrency=max_concurrency, throttle=throttle))
    for p in pools:
        if p.max_concurrency is None and p.throttle is None and p.blocked_until is None:
            continue
        out.append(KeyLimit(pool_key(tenant_id, p.name), WaitingReason.POOL_LIMIT, concurrency=p.max_concurrency,
                            throttle=p.throttle, blocked_until=p.blocked_until, waiting_for=p.name))
    return tuple(out)


@dataclass(frozen=True)
class PoolLimit:
    """A pool as admission sees it."""

    name: str
    max_concurrency: int | None = None
    throttle: Throttle | None = None
    blocked_until: float | None = None


def handoff_changes(old_holds: Sequence[str], new: Admit) -> tuple[list[str], list[str]]:
    """Handing a slot from a run holding ``old_holds`` to ``new``: (keys to give back, keys to take)."""
    old, nxt = set(old_holds), set(new.holds)
    return sorted(old - nxt), sorted(nxt - old)


def waiting_reason(s: Any, now: float, paused: bool) -> tuple[str | None, str | None]:
    """Why a stored run waits, decided when it is read: the scheduler's pause and a retry's
    back-off from the clock, a keyed limit from what admission last wrote on the run (it writes
    only when the reason changes), else the global cap. Admitted, running and finished runs and
    runs whose time has not come yet wait for nothing."""
    if s.status.value not in ("QUEUED", "RETRYING") or s.stage != "PENDING":
        return None, None
    if paused:
        return WaitingReason.SCHEDULER_PAUSED.value, None
    own_rate_limit = s.waiting_reason == WaitingReason.RATE_LIMITED.value and s.waiting_for is None
    if s.status.value == "RETRYING" and (s.error or {}).get("category") == "RATE_LIMITED":
        own_rate_limit = True
    if own_rate_limit and s.eligible_at > now:
        return WaitingReason.RATE_LIMITED.value, None  # the run's own provider rate limit: it waits out Retry-After
    if s.eligible_at > now:
        return (WaitingReason.BACKOFF.value, None) if s.status.value == "RETRYING" else (None, None)
    if s.waiting_reason:
        return s.waiting_reason, s.waiting_for
    return WaitingReason.CAPACITY.value, None
