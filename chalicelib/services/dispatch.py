"""The tick, admission and recovery: decide (pure planners), then execute (adapters).

One fire, start to end (see ARCHITECTURE.md):
1. the tick reads due schedules and writes, per schedule, one transaction: the
   schedule's advance (conditional on the value it read) and the fire's session,
   whose id is derived from (agent, fire time), created PENDING: exactly once
   whichever tick writes it;
2. admission takes the first waiting runs in priority order into free slots: per
   slot shard one transaction adds to the counter (conditional: never past its
   share of the cap) and moves the sessions to ADMITTED; then it sends them;
3. the worker claims (ADMITTED -> RUNNING, with its token), runs, and finishes
   with one transaction: the outcome, the slot released or handed to the next
   waiting run, the agent's counts;
4. every state that is not final has a way out: PENDING runs are admitted by the
   next admission, ADMITTED runs nobody claimed are sent again, RUNNING runs past
   their lease are ended as a failed attempt (and retried through admission);
   the recovery sweep finds them through the sparse active index, bounded per shard.
"""
from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from chalicelib import observability
from chalicelib.adapters.queues import OutMessage
from chalicelib.domain.admission import (
    START_SLACK_SECONDS,
    Admit,
    Candidate,
    SlotShard,
    WaitingReason,
    plan_admission,
    send_delay,
)
from chalicelib.domain.budget import fire_blocked
from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.expressions import fire_times_for
from chalicelib.domain.ids import jitter_offset, manual_session_id, scheduled_session_id
from chalicelib.domain.model import OverlapPolicy, Priority, SessionStatus, SkipReason, Trigger
from chalicelib.domain.records import STAGE_ADMITTED, STAGE_PENDING, Agent, Session
from chalicelib.domain.runflow import Backoff, Next, after_abandoned
from chalicelib.domain.schedule import add_period_start, close_period, plan_fires
from chalicelib.domain.tickplan import MAX_ITEMS_PER_SCHEDULE, AdvanceSchedule, SchedulePlan
from chalicelib.errors import SchedulerError

log = logging.getLogger("agent_scheduler.dispatch")

ADMIT_BATCH = 99  # runs per admission transaction (plus their slot counter: 100 items)
ADMIT_ROUNDS = 3  # re-plans when another admitter took the slots first
PENDING_READ_FACTOR = 4  # waiting runs read per free slot (a keyed limit may hold the first ones back)
PENDING_READ_EXTRA = 20
AGED_PROBE_PER_RANK = 5  # the tick also reads this many oldest runs of each priority that can age, per shard
TX_ITEMS = 100  # DynamoDB's limit of items in one transaction
KEY_RECONCILE_MINUTES = 10  # the keyed counters are checked by the tick of every 10th minute


def _batches(admits: list[Admit]) -> list[list[Admit]]:
    """Admission transactions: the slot counter, the runs, and each keyed counter they take,
    at most ``TX_ITEMS`` items each."""
    out: list[list[Admit]] = []
    cur: list[Admit] = []
    keys: set[str] = set()
    for a in admits:
        new = set(a.holds + a.starts) - keys
        if cur and (1 + len(cur) + 1 + len(keys) + len(new) > TX_ITEMS or len(cur) >= ADMIT_BATCH):
            out.append(cur)
            cur, keys, new = [], set(), set(a.holds + a.starts)
        cur.append(a)
        keys |= new
    if cur:
        out.append(cur)
    return out


def _at(s: Session, start_at: float | None) -> Session:
    """The run as its message describes it: a throttle may have moved its start to a later window."""
    return s if start_at is None or start_at <= s.eligible_at else s.with_(next_attempt_at=start_at)
RECOVER_PER_SHARD = 50  # expired leases handled per slot shard per tick


@functools.lru_cache(maxsize=20_000)
def cron_for(expression: str, timezone: str, agent_id: str) -> CronSchedule:
    return CronSchedule.parse(expression, timezone, hash_id=agent_id)


def run_message(s: Session, attempt: int, *, waiting: bool = False) -> dict:
    """The work message: what the worker needs to claim the run without reading it first."""
    body = {"t": s.tenant_id, "a": s.agent_id, "s": s.session_id, "n": attempt,
            "e": s.eligible_at, "x": s.timeout_seconds}
    if s.check_overlap:
        body["o"] = 1  # a scheduled run whose overlap policy is judged when it starts
    if waiting:
        body["w"] = 1  # runs were left waiting when this one was admitted
    return body


@dataclass
class TickReport:
    now: float
    due: int = 0
    created: int = 0
    skipped: int = 0
    admitted: int = 0
    resent: int = 0
    recovered: int = 0
    repaired: int = 0
    lost_races: int = 0
    failed_groups: int = 0
    paused: bool = False
    counters: Counter = field(default_factory=Counter)


class Dispatcher:
    def __init__(self, container) -> None:
        self.c = container
        self.s = container.settings

    def _backoff(self) -> Backoff:
        import random

        return Backoff(self.s.backoff_base_seconds, self.s.backoff_max_seconds, random.random)

    # --- the tick -------------------------------------------------------------
    def tick(self) -> TickReport:
        now = self.c.clock.now().timestamp()
        state = self.c.control.state()
        report = TickReport(now=now, paused=state.paused)
        fresh: list[Session] = []
        if not state.paused:
            due = self._read_due(now)
            report.due = len(due)
            self.c.agents.prime(due, now)
            fresh = self._write_schedules(due, now, state.pauses, report)
        report.admitted = self._guard("admission", lambda: self.admit(now, paused=state.paused, fresh=fresh,
                                                                       probe_aged=True), 0)
        self._guard("recovery", lambda: self.recover(now, report), None)
        report.repaired = self._guard("reconcile", self.reconcile, 0)
        if int(now // 60) % KEY_RECONCILE_MINUTES == 0:  # a Scan of the control table: not every minute
            report.repaired += self._guard("reconcile keyed counters", self.reconcile_keys, 0)
        self.c.control.set_last_tick(now)
        self._publish_status()
        log.info("tick", extra={f"tick_{k}": getattr(report, k) for k in (
            "due", "created", "skipped", "admitted", "resent", "recovered", "repaired", "lost_races", "failed_groups")})
        from chalicelib.services import metrics

        metrics.tick_done(report)
        return report

    @staticmethod
    def _guard(what: str, fn, default):
        """One phase failing (an AWS error) is logged; the tick goes on with the next."""
        try:
            return fn()
        except SchedulerError:
            log.exception("tick phase failed; the next tick repeats it", extra={"phase": what})
            return default

    def dispatch_soon(self, agent: Agent) -> None:
        """A schedule saved with its first fire inside the lookahead is planned at once,
        not at the next tick (which could be up to a minute after that fire)."""
        now = self.c.clock.now().timestamp()
        if agent.schedule is None or not agent.schedule.enabled or agent.next_run_at is None:
            return
        if agent.next_run_at > now + self.s.lookahead_seconds:
            return
        state = self.c.control.state()
        if not state.paused:
            fresh = self._write_schedules([agent], now, state.pauses, TickReport(now=now))
            self.admit(now, paused=False, fresh=fresh)

    def _write_schedules(self, due: list[Agent], now: float, pauses, report: TickReport) -> list[Session]:
        plans = []
        try:
            budgets = self._budget_days(due, now)
        except SchedulerError:  # the budgeted schedules stay due; the next tick plans them
            log.exception("budget counters not read; schedules with a budget wait for the next tick")
            budgets, due = {}, [a for a in due if a.budget is None]
        for agent in due:
            with observability.bind_schedule(tenant_id=agent.tenant_id, agent_id=agent.agent_id,
                                             fire_time=agent.next_run_at):
                try:
                    usage = budgets.get((agent.tenant_id, agent.agent_id))
                    plans.append(self._plan_schedule(agent, now, pauses, usage=usage))
                    log.debug("schedule planned", extra={"sessions": len(plans[-1].sessions)})
                except Exception:  # a schedule that cannot be planned must not stop the others
                    log.exception("schedule could not be planned")
                    report.failed_groups += 1
        result = self.c.tick_writer.commit(plans, now)
        report.counters["transactions"] += result.transactions
        report.lost_races += len(result.lost)
        report.failed_groups += len(result.failed)
        if result.lost:
            log.info("another tick got there first", extra={"schedules": len(result.lost)})
        fresh, skipped = [], []
        for p in result.committed:
            for s in p.sessions:
                if s.status is SessionStatus.SKIPPED:
                    skipped.append(s)
                else:
                    fresh.append(s)
        report.skipped += len(skipped)
        report.created += len(fresh)
        if skipped:
            try:
                self.c.events.skipped(skipped)  # agent:skipped, with each fire's reason
            except SchedulerError:
                log.exception("agent:skipped events not published")
        return fresh

    def _read_due(self, now: float) -> list[Agent]:
        until = now + self.s.lookahead_seconds
        out: list[Agent] = []
        for n in range(self.s.due_shards):
            out.extend(self.c.agents.query_due(f"d{n:03d}", until))
        return out

    def _budget_days(self, due: list[Agent], now: float) -> dict:
        """Today's budget counters of the due agents that have a budget (one batch read per 100)."""
        from chalicelib.domain.budget import budget_day

        wanted = [(a.tenant_id, a.agent_id, budget_day(now, a.budget.timezone)) for a in due if a.budget is not None]
        return self.c.runs.budget_usages(wanted) if wanted else {}

    def _plan_schedule(self, agent: Agent, now: float, pauses, usage=None) -> SchedulePlan:
        spec = agent.schedule
        cron = fire_times_for(spec, agent.agent_id)  # cron, rate() or at()
        plan = plan_fires(
            agent_id=agent.agent_id,
            spec=spec,
            cron=cron,
            next_run_at=agent.next_run_at,
            active_runs=agent.active_runs,
            now=now,
            lookahead=self.s.lookahead_seconds,
            late_tolerance=2 * self.s.lookahead_seconds,
            paused_periods=pauses,
        )
        events = sorted([(r.fire_at, r) for r in plan.runs] + [(k.fire_at, k) for k in plan.skips],
                        key=lambda e: e[0])
        next_run_at, next_due_at = plan.next_run_at, plan.next_due_at
        if len(events) > MAX_ITEMS_PER_SCHEDULE:
            # A schedule far behind is worked off over several ticks, one transaction each:
            # the rest is planned again from where this tick stops.
            events = events[:MAX_ITEMS_PER_SCHEDULE]
            last = events[-1][0]
            nxt = cron.next_after(datetime.fromtimestamp(last, tz=timezone.utc))
            next_run_at = nxt.timestamp() if nxt is not None else last + 1
            next_due_at = next_run_at + jitter_offset(agent.agent_id, next_run_at, spec.jitter_seconds)
        # The overlap rule is judged again when a run starts only if another run of the agent
        # may still be active then: one active now, or an earlier run of this same plan.
        check = spec.overlap_policy is not OverlapPolicy.ALLOW
        active = agent.active_runs
        sessions = []
        for fire_at, e in events:
            common = dict(
                agent_id=agent.agent_id,
                session_id=scheduled_session_id(agent.agent_id, fire_at),
                tenant_id=agent.tenant_id,
                trigger=Trigger.SCHEDULE,
                priority=spec.priority,
                queued_at=now,
                max_attempts=agent.max_retries + 1,
                timeout_seconds=agent.timeout_seconds,
            )
            if hasattr(e, "reason") or fire_blocked(agent.budget, usage, fire_at):
                reason = e.reason.value if hasattr(e, "reason") else SkipReason.BUDGET_EXHAUSTED.value
                sessions.append(Session(status=SessionStatus.SKIPPED, scheduled_for=fire_at, finished_at=now,
                                        skip_reason=reason, **common))
            else:
                sessions.append(Session(status=SessionStatus.QUEUED, scheduled_for=e.scheduled_for,
                                        stage=STAGE_PENDING, check_overlap=check and active > 0, **common))
                active += 1
        runs = sum(1 for s in sessions if s.status is SessionStatus.QUEUED)
        advance = AdvanceSchedule(agent.tenant_id, agent.agent_id, agent.next_run_at, next_run_at, next_due_at, runs)
        return SchedulePlan(advance, tuple(sessions))

    # --- admission ---------------------------------------------------------------
    @staticmethod
    def _candidate(s: Session) -> Candidate:
        return Candidate(
            session_id=s.session_id,
            tenant_id=s.tenant_id,
            agent_id=s.agent_id,
            priority=s.priority,
            eligible_at=s.eligible_at,
            timeout_seconds=s.timeout_seconds,
            attempt=s.attempt + 1,
            backfill=s.trigger is Trigger.BACKFILL,
        )

    def admit(self, now: float | None = None, *, paused: bool | None = None, fresh=(), probe_aged: bool = False) -> int:
        """Admit waiting runs into free slots in priority order and send them. Returns how many.

        ``probe_aged`` (the tick's admission, not the hand-offs): also read the oldest runs of
        each priority that can age, so a run that aged behind a deep backlog of a higher stored
        priority is seen."""
        now = self.c.clock.now().timestamp() if now is None else now
        if paused is None:
            paused = self.c.control.state().paused
        self.last_reasons, self.last_admitted = {}, set()
        if paused:
            self.last_reasons = {s.session_id: (WaitingReason.SCHEDULER_PAUSED, None) for s in fresh}
            return 0
        cap = self.s.max_concurrent_agents
        until = now + self.s.lookahead_seconds
        admitted_total = 0
        gone: set[str] = set()
        for _ in range(ADMIT_ROUNDS):
            shards = self.c.runs.slots(cap)
            free = sum(s.free for s in shards)
            # read past the head: runs a keyed limit holds back must not hide the runs behind them
            pending = self.c.runs.pending(want=max(free, 1) * PENDING_READ_FACTOR + PENDING_READ_EXTRA,
                                          eligible_until=until)
            sessions = {s.session_id: s for s in pending}
            sessions.update({s.session_id: s for s in fresh})
            if probe_aged and free > 0:
                sessions.update(self._aged_waiting(now, set(sessions)))
            for sid in gone:
                sessions.pop(sid, None)
            cands = [self._candidate(s) for s in sessions.values()]
            counters: dict[str, int] = {}
            if free > 0:  # with no free slot nothing starts: the keyed limits need not be read
                cands, counters = self.c.flow.with_limits(cands, now)
            plan = plan_admission(cands, shards, now=now, lookahead=self.s.lookahead_seconds,
                                  claim_grace=self.s.resend_grace_seconds, counters=counters,
                                  aging_seconds=self.s.priority_aging_seconds)
            self.last_reasons = dict(plan.reasons)
            if free > 0:
                try:
                    self.c.flow.note_reasons(plan.reasons, sessions)
                except SchedulerError:
                    log.exception("waiting reasons not written")
            blocked = any(c.eligible_at <= until for c in plan.waiting)
            self._set_hint(shards, blocked)
            if not plan.admit:
                return admitted_total
            full = False
            by_name = {s.name: s for s in shards}
            for name, admits in plan.by_shard().items():
                for batch in _batches(admits):
                    done, lost = self.c.runs.admit(by_name[name], batch, sessions, now,
                                                   key_limits=plan.key_limits, key_expiry=plan.key_expiry)
                    gone.update(lost)
                    if not done and not lost:
                        full = True  # another admitter took these slots first
                        break
                    self._send(done, sessions, waiting=blocked)
                    admitted_total += len(done)
                    taken = {a.candidate.session_id for a in done}
                    self.last_admitted |= taken
                    fresh = [s for s in fresh if s.session_id not in taken]
            if not full:
                return admitted_total
        return admitted_total

    last_reasons: dict = {}  # the last admission's waiting reasons (run-now answers with its run's)
    last_admitted: set = set()

    def _aged_waiting(self, now: float, known: set[str]) -> dict[str, Session]:
        """The oldest waiting runs of the priorities that age, those admission ranks higher
        than stored (not already read with the head)."""
        from chalicelib.domain.admission import aged_past_stored, aging_probe_ranks

        found: dict[str, Session] = {}
        for rank in aging_probe_ranks(self.s.priority_aging_seconds):
            for s in self.c.runs.oldest_pending(rank, AGED_PROBE_PER_RANK):
                if s is not None and s.session_id not in known:
                    found[s.session_id] = s
        aged = aged_past_stored([self._candidate(s) for s in found.values()], now, self.s.priority_aging_seconds)
        return {c.session_id: found[c.session_id] for c in aged}

    def _set_hint(self, shards: list[SlotShard], blocked: bool) -> None:
        change = [s.name for s in shards if s.waiting != blocked]
        if change:
            self.c.runs.set_waiting(change, blocked)

    def _send(self, admits: list[Admit], sessions: dict[str, Session], waiting: bool = False) -> None:
        if not admits:
            return
        msgs = [
            OutMessage(
                a.candidate.session_id,
                run_message(_at(sessions[a.candidate.session_id], a.start_at), a.candidate.attempt, waiting=waiting),
                a.delay_seconds,
                deliver_at=a.starts_at - START_SLACK_SECONDS,
            )
            for a in admits
        ]
        try:
            failed = self.c.work_queue.send_batch(msgs, now=lambda: self.c.clock.now().timestamp())
        except SchedulerError:
            failed = [m.id for m in msgs]
        if failed:
            # Left ADMITTED: the recovery sweep sends them again once their lease passes.
            log.warning("runs not sent; the recovery sweep will send them", extra={"count": len(failed)})

    def send_one(self, s: Session, lease_until: float, waiting: bool = False) -> None:
        """Send one admitted run (its next attempt) again, or after a hand-off."""
        now = self.c.clock.now().timestamp()
        a = Admit(self._candidate(s), send_delay(s.eligible_at, now), s.slot or "", lease_until)
        self._send([a], {s.session_id: s}, waiting=waiting)

    # --- recovery -------------------------------------------------------------------
    def recover(self, now: float, report: TickReport | None = None) -> int:
        """Every run holding a slot past its lease: sent again (never claimed), or its attempt
        ended as failed (the worker stopped) and the run retried through admission."""
        from chalicelib.services.worker import end_attempt

        n = 0
        for name, _ in self._shard_limits():
            for s in self.c.runs.expired(name, now, RECOVER_PER_SHARD):
                n += 1
                if s.stage == STAGE_ADMITTED:
                    if s.cancel_requested:
                        self.c.runs.cancel_waiting(s, now)
                        continue
                    lease = now + self.s.resend_grace_seconds
                    if self.c.runs.extend_lease(s, lease):
                        self.send_one(s.with_(run_lease_until=lease), lease)
                        if report:
                            report.resent += 1
                elif s.status is SessionStatus.RUNNING and s.is_async:
                    # An async attempt with no news by its deadline or heartbeat: TIMEOUT, retried by policy.
                    from chalicelib.services.async_runs import expire_async

                    if expire_async(self.c, s, now, self._backoff()) and report:
                        report.counters["async_expired"] += 1
                elif s.status is SessionStatus.RUNNING:
                    t = after_abandoned(attempt=s.attempt, max_attempts=s.max_attempts,
                                        cancel_requested=s.cancel_requested, now=now, backoff=self._backoff(),
                                        rate_limited_waits=s.rate_limited_waits)
                    end_attempt(self.c, s, t, now, duration_ms=None, ended_by="SUPERSEDED")
                    if report:
                        report.recovered += 1
        return n

    def _shard_limits(self):
        from chalicelib.domain.admission import slot_limits

        return slot_limits(self.s.max_concurrent_agents)

    def reconcile(self) -> int:
        """Each slot counter against the sessions that hold its slots. A difference seen twice
        in a row, unchanged, is repaired (counted: the CounterRepairs metric and alarm)."""
        from chalicelib.services import metrics

        repaired = 0
        for shard in self.c.runs.slots(self.s.max_concurrent_agents):
            holders = self.c.runs.holders(shard.name)
            if holders == shard.used:
                if shard.audit is not None:
                    self.c.runs.note_audit(shard.name, None)
                continue
            seen = (shard.used, holders)
            if shard.audit == seen and self.c.runs.repair(shard.name, shard.used, holders):
                repaired += 1
                log.warning("slot counter repaired", extra={"shard": shard.name, "used": shard.used, "holders": holders})
                metrics.counter_repaired()
            elif shard.audit != seen:
                self.c.runs.note_audit(shard.name, list(seen))
        return repaired

    def reconcile_keys(self) -> int:
        """Each keyed concurrency counter (tenant, agent, pool) against the runs that hold it
        (the sessions' ``holds``, read from the active index). As for the slot counters, a
        difference seen twice in a row, unchanged, is repaired."""
        from chalicelib.services import metrics

        held: Counter = Counter()
        for name, _ in self._shard_limits():
            held.update(self.c.runs.held_keys(name))
        repaired = 0
        for key, (used, audit) in self.c.pools.concurrency_counters().items():
            holders = held.get(key, 0)
            if holders == used:
                if audit is not None:
                    self.c.pools.note_audit(key, None)
                continue
            seen = (used, holders)
            if audit == seen and self.c.pools.repair(key, used, holders):
                repaired += 1
                log.warning("keyed counter repaired", extra={"key": key, "used": used, "holders": holders})
                metrics.counter_repaired()
            elif audit != seen:
                self.c.pools.note_audit(key, list(seen))
        return repaired

    # --- run now ------------------------------------------------------------------
    def submit_manual(self, agent: Agent, priority: Priority, run_input, trigger: Trigger = Trigger.MANUAL) -> Session:
        now = self.c.clock.now().timestamp()
        s = Session(
            agent_id=agent.agent_id,
            session_id=manual_session_id(now),
            tenant_id=agent.tenant_id,
            status=SessionStatus.QUEUED,
            trigger=trigger,
            priority=priority,
            scheduled_for=now,
            queued_at=now,
            max_attempts=agent.max_retries + 1,
            timeout_seconds=agent.timeout_seconds,
            input=run_input,
            stage=STAGE_PENDING,
        )
        self.c.sessions.create(s)
        self.c.agents.add_active_runs(agent.tenant_id, agent.agent_id, 1)
        try:
            self.admit(now, fresh=[s])
        except SchedulerError:  # it waits; the next admission (at the latest the tick) takes it
            log.exception("admission after run-now failed; the next tick admits")
        return s

    def waiting_after_submit(self, s: Session) -> tuple[str | None, str | None]:
        """Why a run just submitted waits, as the admission that followed its submission saw it
        (null when it was admitted)."""
        if s.session_id in self.last_admitted:
            return None, None
        reason = self.last_reasons.get(s.session_id)
        if reason is not None:
            return reason[0].value, reason[1]
        stored = self.c.runs.get(s.agent_id, s.session_id)
        if stored is None or stored.stage != STAGE_PENDING:
            return None, None
        from chalicelib.domain.admission import waiting_reason

        return waiting_reason(stored, self.c.clock.now().timestamp(), self.c.control.state().paused)

    def admit_pending(self) -> int:
        """Work-conserving admission outside the tick (run-now, cancel, resume, redrive)."""
        try:
            return self.admit()
        except SchedulerError:
            log.exception("admission failed; the next tick admits")
            return 0

    # --- cancel ---------------------------------------------------------------------
    def cancel(self, s: Session) -> Session | None:
        """Cancel a run that has not finished. Returns the session as it now stands, or
        None when it moved meanwhile (look again)."""
        now = self.c.clock.now().timestamp()
        if s.status is SessionStatus.RUNNING and s.is_async:
            # Nobody waits for an async run: it ends now, its slots freed, and the agent is told.
            from chalicelib.services.async_runs import cancel_async

            if not cancel_async(self.c, s, now):
                return None
            return self.c.runs.get(s.agent_id, s.session_id) or s.with_(status=SessionStatus.CANCELLED)
        if s.status is SessionStatus.RUNNING:
            if self.c.runs.request_cancel(s):
                return s.with_(cancel_requested=True)
            return None
        if self.c.runs.cancel_waiting(s, now):
            if s.slot:
                self.admit_pending()
            return s.with_(status=SessionStatus.CANCELLED, finished_at=now, stage=None, slot=None,
                           next_attempt_at=None, cancel_requested=True,
                           error={"category": "CANCELLED", "message": "cancelled on request"})
        return None

    # --- status, pause ---------------------------------------------------------------
    def status(self, tenant_id: str, admin: bool) -> dict:
        state = self.c.control.state()
        shards = self.c.runs.slots(self.s.max_concurrent_agents)
        used = sum(s.used for s in shards)
        running = queued = 0
        if admin:
            for shard in shards:
                r, q = self.c.sessions.count_holding(shard.name, None)
                running, queued = running + r, queued + q
        else:
            for shard in shards:
                r, q = self.c.sessions.count_holding(shard.name, tenant_id)
                running, queued = running + r, queued + q
        pending: Counter = Counter()
        for n in range(self.s.pending_shards):
            pending.update(self.c.sessions.count_pending(f"p{n:03d}", None if admin else tenant_id))
        from chalicelib.api.serialize import iso

        return {
            "paused": state.paused,
            "maxConcurrentAgents": self.s.max_concurrent_agents,
            "running": running,
            "queued": queued,
            "pending": {p.value: pending.get(p.value, 0) for p in Priority},
            "pendingTotal": sum(pending.values()),
            "slotsInUse": used,
            "slotsFree": max(0, self.s.max_concurrent_agents - used),
            "lastTickAt": iso(state.last_tick_at),
            "dlqDepth": self.c.sessions.count_dlq(None if admin else tenant_id),
            "tickSeconds": self.s.tick_seconds,
        }

    def _publish_status(self) -> None:
        """``scheduler:status`` to connected clients after each tick (the contract's heartbeat:
        clients see the tick go on, and gone connections are found and removed)."""
        try:
            self.c.events.publish_status(lambda tenant: self.status(tenant, admin=False))
        except SchedulerError:
            log.exception("status publish failed")

    def set_paused(self, paused: bool) -> None:
        now = self.c.clock.now().timestamp()
        state = self.c.control.state()
        if state.paused == paused:
            return
        pauses = add_period_start(state.pauses, now) if paused else close_period(state.pauses, now)
        self.c.control.set_paused(paused, pauses)
        if not paused:
            self.admit_pending()


__all__ = ["Dispatcher", "TickReport", "run_message", "cron_for", "Next"]
