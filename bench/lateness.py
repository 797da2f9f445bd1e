"""Figure 4: run start lateness over a simulated day (discrete events, virtual clock, no AWS).

Both systems see the same schedules (bench/data.py), the same tick times, the
same run durations and the same request latencies (bench/capacity.py).

The project, with its own pure planners:
- a tick every 60 s (at the minute plus an invocation lag) calls
  ``domain.schedule.plan_fires`` for every schedule due within the lookahead
  and ``domain.admission.plan_admission`` for the new and the pending runs;
- its writes and sends take time: the reads, CPU per fire (figure 2), one
  TransactWriteItems per 50 fires, one SendMessageBatch per 10 runs; each
  admitted run is sent with ``DelaySeconds = floor(eligible - tick start)``;
- SQS hands the message to a worker after the delay plus a delivery latency;
  the worker, if the run is early by at most the worker's
  ``EARLY_WAIT_SECONDS``, waits for the run's time, then claims it (one
  UpdateItem that returns the run) and reads the agent;
- when a run ends and runs wait, the finishing worker hands its slot to the first
  waiting run (one pending Query, the finish transaction that admits it, one
  SendMessageBatch); otherwise the finish releases the slot and the next
  admission (a tick, or a finish that finds runs waiting) takes it.

The baseline: the same ticks; it scans the table, then for each due fire (in
the scan's order) does UpdateItem + SendMessage one after the other, with no
delay; under a cap it sends only while slots are free (sent and not finished)
and leaves the rest for the next tick.

Start = when the agent's code starts (after the worker's claim write); lateness
= start - scheduled time (fire time plus the schedule's deterministic jitter).
"""
from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bench import data
from bench.capacity import latency_s
from chalicelib.domain import admission as _admission
from chalicelib.domain.admission import MAX_SQS_DELAY, Candidate, SlotShard, plan_admission
from chalicelib.domain.ids import jitter_offset, stable_bucket
from chalicelib.domain.schedule import plan_fires

# The worker's rule and the planner's slack, read from the project so the model follows the code.
try:
    from chalicelib.services.worker import EARLY_WAIT_SECONDS as WORKER_EARLY_WAIT
except ImportError:  # older worker: waits only a sub-second remainder
    WORKER_EARLY_WAIT = 1.0
START_SLACK = getattr(_admission, "START_SLACK_SECONDS", 0)


def code_delays_at_send() -> bool:
    """Does the project compute DelaySeconds when each batch is sent (``OutMessage.deliver_at``),
    rather than from the tick's start time?"""
    try:
        from chalicelib.adapters.queues import OutMessage
    except ImportError:  # pragma: no cover
        return False
    return "deliver_at" in getattr(OutMessage, "__dataclass_fields__", {})


def variant_label(delay_from_send: bool) -> str:
    return "DelaySeconds at send" if delay_from_send else "DelaySeconds from tick start"

LOOKAHEAD = 60.0
TICK = 60.0
CLAIM_GRACE = 30.0  # SCHEDULER_RESEND_GRACE_SECONDS: an admitted run unclaimed this long is sent again
DAY_START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)  # a Monday
TICK_LAG = (0.05, 1.0)  # EventBridge -> tick Lambda start, seconds (uniform)
SQS_DELIVERY = (0.05, 0.3)  # delay expired -> worker has the message, seconds (uniform)


@dataclass(frozen=True)
class Scenario:
    name: str
    cap: int
    median_s: float  # run duration: lognormal
    sigma: float
    max_s: float = 280.0


@dataclass
class Costs:
    """Request-path latencies in seconds, from the measured request mixes (figure 1)."""

    cpu_per_fire: float = 0.0005
    tick_pre: float = 0.0  # state, due queries, slot counters, pending queries
    shards: int = 8
    claim: float = latency_s("UpdateItem")  # the claim: one UpdateItem that returns the run
    agent_read: float = latency_s("GetItem")  # the agent, when this worker has not cached it
    finish: float = latency_s("TransactWriteItems")  # the end of the attempt: one transaction
    handoff_query: float = latency_s("Query")  # the first waiting run, when the hint says runs wait
    send: float = latency_s("SendMessageBatch")
    base_cpu_per_fire: float = 0.001
    base_scan: float = 0.0
    base_claim: float = latency_s("PutItem")
    base_finish: float = latency_s("UpdateItem")

    def __post_init__(self) -> None:
        if not self.tick_pre:
            self.tick_pre = (latency_s("GetItem") + latency_s("BatchGetItem")
                             + self.shards * latency_s("Query") + latency_s("Query"))


@dataclass
class SimResult:
    system: str
    scenario: str
    lateness: list[float] = field(default_factory=list)  # seconds, one per started run
    priorities: list[str] = field(default_factory=list)
    waited: int = 0  # runs that found no free slot when first considered
    fires: int = 0

    def pct(self, q: float, prio: str | None = None) -> float:
        xs = self.lateness if prio is None else [x for x, p in zip(self.lateness, self.priorities) if p == prio]
        if not xs:
            return float("nan")
        xs = sorted(xs)
        k = min(len(xs) - 1, max(0, math.ceil(q / 100.0 * len(xs)) - 1))
        return xs[k]

    @property
    def max(self) -> float:
        return max(self.lateness) if self.lateness else float("nan")


DRAIN_HOURS = 3.0  # ticks go on after the simulated day until every run has started


def _tick_times(hours: float, seed: int) -> list[float]:
    rng = random.Random(f"ticks-{seed}")
    start = DAY_START.timestamp()
    return [start + k * TICK + rng.uniform(*TICK_LAG) for k in range(int((hours + DRAIN_HOURS) * 3600 / TICK) + 1)]


def _delivery(rng: random.Random) -> float:
    return rng.uniform(*SQS_DELIVERY)


# --- the project ------------------------------------------------------------------------------------
def simulate_project(scheds: list[data.Sched], sc: Scenario, costs: Costs, hours: float, seed: int = 1,
                     delay_from_send: bool | None = None) -> SimResult:
    """``delay_from_send``: None follows the code (``code_delays_at_send``); True/False
    simulates DelaySeconds computed when each batch is sent / from the tick's start."""
    as_code = delay_from_send is None or delay_from_send == code_delays_at_send()
    if delay_from_send is None:
        delay_from_send = code_delays_at_send()
    res = SimResult("project" if as_code else f"project, {variant_label(delay_from_send)}", sc.name)
    rng = random.Random(f"project-{seed}")
    start = DAY_START.timestamp()
    end = start + hours * 3600
    ticks = _tick_times(hours, seed)
    due: list[tuple[float, int]] = []
    next_run: dict[int, float] = {}
    for s in scheds:
        t = s.cron.next_after(DAY_START).timestamp()
        if t > end:
            continue
        next_run[s.index] = t
        heapq.heappush(due, (t + jitter_offset(s.agent_id, t, s.spec.jitter_seconds), s.index))
    pending: list[tuple[tuple, Candidate]] = []
    live: set[str] = set()  # runs holding a slot (admitted, running): the sessions are the leases
    info: dict[str, tuple[data.Sched, float]] = {}  # session id -> (schedule, fire time)
    events: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(t: float, kind: str, payload) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, payload))

    for t in ticks:
        push(t, "tick", None)

    def admit(now: float, send_at: float, limit: int | None = None) -> set:
        free = sc.cap - len(live)
        if limit is not None:
            free = min(free, limit)
        if free <= 0 or not pending:
            return set()
        take = [heapq.heappop(pending)[1] for _ in range(min(free, len(pending)))]
        plan = plan_admission(take, [SlotShard("s000", sc.cap - free, sc.cap)], now=now, lookahead=LOOKAHEAD,
                              claim_grace=CLAIM_GRACE)
        for c in plan.waiting:
            heapq.heappush(pending, (c.order_key, c))
        for j, a in enumerate(plan.admit):
            live.add(a.candidate.session_id)
            sent = send_at + (j // 10 + 1) * costs.send
            delay = a.delay_seconds
            if delay_from_send:
                delay = min(MAX_SQS_DELAY, max(0, math.floor(a.candidate.eligible_at - sent) - START_SLACK))
            push(sent + delay + _delivery(rng), "deliver", a.candidate)
        return {a.candidate.session_id for a in plan.admit}

    while events:
        t, _, kind, payload = heapq.heappop(events)
        if kind == "tick":
            if t > end and not pending and not due:
                continue
            horizon = t + LOOKAHEAD
            n_new = 0
            new_ids = []
            while due and due[0][0] <= horizon:
                _, i = heapq.heappop(due)
                s = scheds[i]
                plan = plan_fires(agent_id=s.agent_id, spec=s.spec, cron=s.cron, next_run_at=next_run[i],
                                  active_runs=0, now=t, lookahead=LOOKAHEAD, late_tolerance=2 * LOOKAHEAD)
                for r in plan.runs:
                    if r.fire_at > end:
                        break
                    sid = f"{s.agent_id}@{r.fire_at:.0f}"
                    c = Candidate(sid, s.tenant_id, s.agent_id, s.priority, r.scheduled_for, data.TIMEOUT_SECONDS)
                    info[sid] = (s, r.fire_at)
                    heapq.heappush(pending, (c.order_key, c))
                    new_ids.append(sid)
                    n_new += 1
                    res.fires += 1
                if plan.next_run_at is not None and plan.next_due_at is not None and plan.next_run_at <= end:
                    next_run[i] = plan.next_run_at
                    heapq.heappush(due, (plan.next_due_at, i))
            tx = math.ceil(2 * n_new / 100)
            send_at = t + costs.tick_pre + n_new * costs.cpu_per_fire + tx * latency_s("TransactWriteItems")
            got = admit(t, send_at)
            res.waited += sum(1 for sid in new_ids if sid not in got)
        elif kind == "deliver":
            c = payload  # a Candidate
            early = c.eligible_at - t
            begin = c.eligible_at if 0 < early <= WORKER_EARLY_WAIT else t
            begin += costs.claim + costs.agent_read
            s, fire = info.pop(c.session_id)
            res.lateness.append(begin - c.eligible_at)
            res.priorities.append(c.priority.value)
            dur = data.run_duration(s.agent_id, fire, sc.median_s, sc.sigma, sc.max_s)
            push(begin + dur, "end", c.session_id)
        elif kind == "end":
            live.discard(payload)
            if pending:  # the finish hands the slot to the first waiting run, in the same transaction
                admit(t + costs.handoff_query, t + costs.handoff_query + costs.finish, limit=1)
    return res


# --- the baseline -----------------------------------------------------------------------------------
def simulate_baseline(scheds: list[data.Sched], sc: Scenario, costs: Costs, hours: float, seed: int = 1) -> SimResult:
    res = SimResult("baseline", sc.name)
    rng = random.Random(f"baseline-{seed}")
    start = DAY_START.timestamp()
    end = start + hours * 3600
    ticks = _tick_times(hours, seed)
    # Every fire of the day, by scheduled time; a due fire waits in the scan's order (the table's).
    pos = {s.index: stable_bucket(s.agent_id, 1 << 30) for s in scheds}
    upcoming = [(sched, s.index, fire) for s in scheds for fire, sched in data.day_fires(s, start, end)]
    heapq.heapify(upcoming)
    res.fires = len(upcoming)
    backlog: list[tuple[int, float, int, float]] = []  # (scan position, scheduled, schedule, fire)
    held: set[tuple[int, float]] = set()
    running = 0
    events: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(t: float, kind: str, payload) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, payload))

    for t in ticks:
        push(t, "tick", None)
    while events:
        t, _, kind, payload = heapq.heappop(events)
        if kind == "tick":
            if not upcoming and not backlog:
                continue
            while upcoming and upcoming[0][0] <= t:
                sched, i, fire = heapq.heappop(upcoming)
                heapq.heappush(backlog, (pos[i], sched, i, fire))
            clock = t + costs.base_scan
            while backlog and running < sc.cap:
                _, sched, i, fire = heapq.heappop(backlog)
                clock += latency_s("UpdateItem") + latency_s("SendMessage") + costs.base_cpu_per_fire
                running += 1
                push(clock + _delivery(rng), "deliver", (i, fire, sched))
            held.update((i, fire) for _, _, i, fire in backlog)
        elif kind == "deliver":
            i, fire, scheduled = payload
            begin = t + costs.base_claim
            res.lateness.append(begin - scheduled)
            res.priorities.append(scheds[i].priority.value)
            dur = data.run_duration(scheds[i].agent_id, fire, sc.median_s, sc.sigma, sc.max_s)
            push(begin + dur + costs.base_finish, "end", None)
        elif kind == "end":
            running -= 1
    res.waited = len(held)
    return res


def tail_points(xs: list[float], k: int = 300) -> list[tuple[float, float]]:
    """(lateness x, fraction of runs starting at least x late), ``k`` points spaced for a log-log plot."""
    if not xs:
        return []
    s = sorted(xs)
    n = len(s)
    js = {0, n - 1}
    for i in range(k):
        later = max(1, int(round(n ** (1 - i / (k - 1)))))  # n .. 1 runs at least this late, log-spaced
        js.add(n - later)
    return [(s[j], (n - j) / n) for j in sorted(js)]


def summarize(res: SimResult) -> dict:
    return {
        "runs": len(res.lateness),
        "fires": res.fires,
        "p50": res.pct(50),
        "p99": res.pct(99),
        "max": res.max,
        "late_over_1s": sum(1 for x in res.lateness if x > 1.0) / max(1, len(res.lateness)),
        "by_priority_p99": {p: res.pct(99, p) for p in ("CRITICAL", "HIGH", "NORMAL", "LOW")},
        "waited": res.waited,
    }


def count_priorities(res: SimResult) -> Counter:
    return Counter(res.priorities)
