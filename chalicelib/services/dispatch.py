"""The tick and admission: decide (pure planners), then execute (adapters).

Exactly once rests on three conditional writes:
- a scheduled run's session id is derived from (agent, fire time) and created
  with ``attribute_not_exists``; the schedule's ``next_run_at`` advances only
  if it still holds the value this tick read. Both are in one transaction per
  schedule, so two ticks (or a retried tick) create each fire once;
- slot leases change under an optimistic version;
- the worker claims a session by moving it to RUNNING for a given attempt.
A tick that dies between its DynamoDB write and its SQS send loses nothing:
the next tick's sweep re-sends admitted runs left unclaimed past a grace period.
"""
from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field

from chalicelib.adapters.dynamo import Capacity, TxGroup, commit_groups
from chalicelib.adapters.queues import OutMessage
from chalicelib.adapters.tables import AgentTenantModel, SessionModel
from chalicelib.domain.admission import START_SLACK_SECONDS, Admit, Candidate, live_leases, plan_admission
from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.ids import manual_session_id, scheduled_session_id
from chalicelib.domain.model import Priority, SessionStatus, Trigger
from chalicelib.domain.records import STAGE_ADMITTED, STAGE_PENDING, Agent, Session
from chalicelib.domain.schedule import add_period_start, close_period, plan_fires
from chalicelib.errors import ConditionFailed

log = logging.getLogger("agent_scheduler.dispatch")

LEASE_RETRIES = 8


@functools.lru_cache(maxsize=20_000)
def cron_for(expression: str, timezone: str, agent_id: str) -> CronSchedule:
    return CronSchedule.parse(expression, timezone, hash_id=agent_id)


def message_body(s: Session, attempt: int) -> dict:
    return {"t": s.tenant_id, "a": s.agent_id, "s": s.session_id, "n": attempt}


@dataclass
class TickReport:
    now: float
    due: int = 0
    created: int = 0
    skipped: int = 0
    admitted: int = 0
    resent: int = 0
    lost_races: int = 0
    paused: bool = False
    counters: Counter = field(default_factory=Counter)


class Dispatcher:
    def __init__(self, container) -> None:
        self.c = container
        self.s = container.settings

    # --- the tick -------------------------------------------------------------
    def tick(self) -> TickReport:
        now = self.c.clock.now().timestamp()
        state = self.c.control.state()
        report = TickReport(now=now, paused=state.paused)
        due = [] if state.paused else self._read_due(now)
        report.due = len(due)
        cap = self._dispatch(due, now, state, report)
        report.resent = self.sweep(now, cap)
        self.c.control.set_last_tick(now)
        self.c.events.publish_status(lambda tenant: self.status(tenant, admin=False))
        log.info(
            "tick",
            extra={f"tick_{k}": getattr(report, k) for k in ("due", "created", "skipped", "admitted", "resent", "lost_races")},
        )
        return report

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
            self._dispatch([agent], now, state, TickReport(now=now))

    def _dispatch(self, due: list[Agent], now: float, state, report: TickReport) -> Capacity:
        """Plan the due schedules and the pending runs, take slots, write, send."""
        groups: list[TxGroup] = []
        new_runs: dict[str, tuple[TxGroup, Session]] = {}
        for agent in due:
            group, runs, skips = self._plan_schedule(agent, now, state.pauses)
            groups.append(group)
            for s in runs:
                new_runs[s.session_id] = (group, s)
            report.created += len(runs)
            report.skipped += skips
        # Read only as many waiting runs per shard as there are free slots (none when full).
        cap_now = self.c.control.capacity()
        free = self.s.max_concurrent_agents - len(live_leases(cap_now.leases.values(), now))
        pending = self._read_pending(now, want=free) if free > 0 and not state.paused else []
        candidates = [self._candidate(s) for _, s in new_runs.values()] + [self._candidate(s) for s in pending]
        admitted, cap = self._acquire(candidates, now, state.paused, cap_now)
        admitted_ids = {a.candidate.session_id for a in admitted}

        # New sessions that got a slot are written ADMITTED; the rest PENDING.
        for sid, (group, s) in new_runs.items():
            if sid in admitted_ids:
                self._mark_admitted_in_group(group, sid, now)
        pending_by_id = {s.session_id: s for s in pending}
        for a in admitted:
            s = pending_by_id.get(a.candidate.session_id)
            if s is not None:
                groups.append(self._admit_existing_group(s, now))
        committed, lost = commit_groups(groups, report.counters)
        lost = self._salvage(lost, report)
        report.lost_races += len(lost)
        lost_ids = {op_sid for g in lost for op_sid in _group_session_ids(g)}
        if lost:
            log.info("another tick got there first", extra={"groups": len(lost)})
        released = [sid for sid in admitted_ids if sid in lost_ids]
        if released:
            self.c.control.release(released)
        to_send = [a for a in admitted if a.candidate.session_id not in lost_ids]
        # Events: agent:skipped for each SKIPPED fire this tick wrote (not the ones another tick wrote).
        self.c.events.skipped([op[3] for g in groups for op in g.ops if len(op) > 3 and isinstance(op[3], Session) and op[3].status is SessionStatus.SKIPPED and op[3].session_id not in lost_ids])
        self._send(to_send)
        report.admitted += len(to_send)
        if released:
            # The slots we gave back belong to runs another tick wrote as pending: fill them now.
            report.admitted += self.admit_pending()
        return cap

    def _salvage(self, lost: list[TxGroup], report: TickReport) -> list[TxGroup]:
        """A schedule whose own condition held but some of whose sessions already exist
        (written by an earlier, interrupted tick) still advances, without those sessions."""
        retry, really_lost = [], []
        for g in lost:
            if g.kind == "schedule" and 0 not in g.failed:
                dropped = [g.ops[i] for i in g.failed]
                sessions = [op for i, op in enumerate(g.ops) if i and i not in g.failed]
                runs = sum(1 for op in sessions if op[3].status is SessionStatus.QUEUED)
                agent, next_run_at, next_due_at = g.meta
                keep = [_advance_op(agent, next_run_at, next_due_at, runs)] + sessions
                retry.append(TxGroup(key=g.key, ops=keep, kind="schedule", meta=g.meta))
                really_lost.append(TxGroup(key=g.key + "#existing", ops=dropped, failed=tuple(range(len(dropped)))))
            else:
                really_lost.append(g)
        if retry:
            _, lost_again = commit_groups(retry, report.counters)
            really_lost += lost_again
        return really_lost

    def _read_due(self, now: float) -> list[Agent]:
        until = now + self.s.lookahead_seconds
        out: list[Agent] = []
        for n in range(self.s.due_shards):
            out.extend(self.c.agents.query_due(f"d{n:03d}", until))
        return out

    def _read_pending(self, now: float, want: int | None = None) -> list[Session]:
        """The first ``want`` eligible waiting runs of each shard: their union holds the
        global first ``want`` in admission order."""
        want = want or self.s.max_concurrent_agents
        until = now + self.s.lookahead_seconds
        out: list[Session] = []
        for n in range(self.s.due_shards):
            out.extend(self.c.sessions.query_pending(f"p{n:03d}", want=want, eligible_until=until))
        return out

    def _plan_schedule(self, agent: Agent, now: float, pauses) -> tuple[TxGroup, list[Session], int]:
        spec = agent.schedule
        cron = cron_for(spec.cron_expression, spec.timezone, agent.agent_id)
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
        group = TxGroup(
            key=agent.agent_id,
            kind="schedule",
            ops=[_advance_op(agent, plan.next_run_at, plan.next_due_at, len(plan.runs))],
            meta=(agent, plan.next_run_at, plan.next_due_at),
        )
        def fire_session(fire_at: float, **fields) -> Session:
            s = Session(
                agent_id=agent.agent_id,
                session_id=scheduled_session_id(agent.agent_id, fire_at),
                tenant_id=agent.tenant_id,
                trigger=Trigger.SCHEDULE,
                priority=spec.priority,
                queued_at=now,
                max_attempts=agent.max_retries + 1,
                timeout_seconds=agent.timeout_seconds,
                **fields,
            )
            group.ops.append(("save", self.c.sessions.item(s), SessionModel.session_id.does_not_exist(), s))
            return s

        runs = [
            fire_session(r.fire_at, status=SessionStatus.QUEUED, scheduled_for=r.scheduled_for, stage=STAGE_PENDING)
            for r in plan.runs
        ]
        for k in plan.skips:
            fire_session(k.fire_at, status=SessionStatus.SKIPPED, scheduled_for=k.fire_at, finished_at=now,
                         skip_reason=k.reason.value)
        return group, runs, plan.skipped_total

    def _admit_existing_group(self, s: Session, now: float) -> TxGroup:
        m = SessionModel
        item = m(s.agent_id, s.session_id)
        actions = [
            m.stage.set(STAGE_ADMITTED),
            m.admitted_at.set(now),
            m.pending_shard.remove(),
            m.pending_rank.remove(),
        ]
        return TxGroup(key=s.session_id, ops=[("update", item, actions, m.stage == STAGE_PENDING, s)])

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
        )

    # --- slots -------------------------------------------------------------------
    def _acquire(
        self, candidates: list[Candidate], now: float, paused: bool, cap: Capacity | None = None
    ) -> tuple[list[Admit], Capacity]:
        """Plan admission and take the leases (from ``cap`` if just read); re-plan from a
        fresh read when another writer moved first."""
        for _ in range(LEASE_RETRIES):
            cap = cap or self.c.control.capacity()
            plan = plan_admission(
                candidates,
                cap.leases.values(),
                cap=self.s.max_concurrent_agents,
                now=now,
                lookahead=self.s.lookahead_seconds,
                lease_margin=self.s.lease_margin_seconds,
                paused=paused,
            )
            if not plan.admit and not plan.expired:
                return [], cap
            try:
                self.c.control.change_leases(cap, [a.lease for a in plan.admit], plan.expired)
                return list(plan.admit), cap
            except ConditionFailed:
                cap = None
                continue
        log.warning("could not take leases: contention; runs stay pending")
        return [], self.c.control.capacity()

    def admit_pending(self) -> int:
        """Work-conserving admission outside the tick (after a run ends, run-now, cancel)."""
        now = self.c.clock.now().timestamp()
        state = self.c.control.state()
        if state.paused:
            return 0
        cap = self.c.control.capacity()
        free = self.s.max_concurrent_agents - len(live_leases(cap.leases.values(), now))
        if free <= 0:
            return 0  # nothing can be admitted: skip reading the pending set
        pending = self._read_pending(now, want=free)
        if not pending:
            return 0
        admitted, _ = self._acquire([self._candidate(s) for s in pending], now, False, cap)
        if not admitted:
            return 0
        by_id = {s.session_id: s for s in pending}
        groups = [self._admit_existing_group(by_id[a.candidate.session_id], now) for a in admitted]
        _, lost = commit_groups(groups)
        lost_ids = {g.key for g in lost}
        if lost_ids:
            self.c.control.release(lost_ids)
        to_send = [a for a in admitted if a.candidate.session_id not in lost_ids]
        self._send(to_send)
        return len(to_send)

    def _send(self, admitted: list[Admit]) -> None:
        if not admitted:
            return
        msgs = [
            OutMessage(
                a.candidate.session_id,
                {"t": a.candidate.tenant_id, "a": a.candidate.agent_id, "s": a.candidate.session_id, "n": a.candidate.attempt},
                a.delay_seconds,
                deliver_at=a.candidate.eligible_at - START_SLACK_SECONDS,
            )
            for a in admitted
        ]
        failed = self.c.work_queue.send_batch(msgs, now=lambda: self.c.clock.now().timestamp())
        if failed:
            # Left ADMITTED with a lease: the sweep re-sends them after the grace period.
            log.warning("runs not sent; the sweep will re-send", extra={"count": len(failed)})

    def sweep(self, now: float, cap: Capacity | None = None) -> int:
        """Re-send admitted runs nobody claimed (a tick died before its send); drop orphan leases."""
        cap = cap or self.c.control.capacity()
        overdue = [l for l in live_leases(cap.leases.values(), now) if l.fire_at + self.s.resend_grace_seconds < now]
        if not overdue:
            return 0
        sessions = self.c.sessions.batch_get([(l.agent_id, l.session_id) for l in overdue])
        resend: list[Admit] = []
        orphans: list[str] = []
        for lease in overdue:
            s = sessions.get(lease.session_id)
            if s is None or s.status.finished:
                orphans.append(lease.session_id)
            elif s.stage == STAGE_ADMITTED and s.status in (SessionStatus.QUEUED, SessionStatus.RETRYING):
                resend.append(Admit(self._candidate(s), 0, lease))
        if orphans:
            self.c.control.release(orphans)
        self._send(resend)
        if resend:
            log.info("re-sent unclaimed runs", extra={"count": len(resend)})
        return len(resend)

    def _mark_admitted_in_group(self, group: TxGroup, session_id: str, now: float) -> None:
        for i, op in enumerate(group.ops):
            if op[0] == "save" and op[3].session_id == session_id:
                s = op[3].with_(stage=STAGE_ADMITTED, admitted_at=now)
                group.ops[i] = ("save", self.c.sessions.item(s), op[2], s)

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
        self.admit_pending()
        return s

    # --- status, pause ---------------------------------------------------------------
    def status(self, tenant_id: str, admin: bool) -> dict:
        now = self.c.clock.now().timestamp()
        state = self.c.control.state()
        cap = self.c.control.capacity()
        live = live_leases(cap.leases.values(), now)
        mine = [l for l in live if admin or l.tenant_id == tenant_id]
        sessions = self.c.sessions.batch_get([(l.agent_id, l.session_id) for l in mine])
        running = sum(1 for s in sessions.values() if s.status is SessionStatus.RUNNING)
        queued = len(mine) - running
        pending: Counter = Counter()
        for n in range(self.s.due_shards):
            pending.update(self.c.sessions.count_pending(f"p{n:03d}", None if admin else tenant_id))
        from chalicelib.api.serialize import iso

        return {
            "paused": state.paused,
            "maxConcurrentAgents": self.s.max_concurrent_agents,
            "running": running,
            "queued": queued,
            "pending": {p.value: pending.get(p.value, 0) for p in Priority},
            "pendingTotal": sum(pending.values()),
            "slotsInUse": len(live),
            "slotsFree": max(0, self.s.max_concurrent_agents - len(live)),
            "lastTickAt": iso(state.last_tick_at),
            "dlqDepth": self.c.sessions.count_dlq(None if admin else tenant_id),
            "tickSeconds": self.s.tick_seconds,
        }

    def set_paused(self, paused: bool) -> None:
        now = self.c.clock.now().timestamp()
        state = self.c.control.state()
        if state.paused == paused:
            return
        pauses = add_period_start(state.pauses, now) if paused else close_period(state.pauses, now)
        self.c.control.set_paused(paused, pauses)
        if not paused:
            self.admit_pending()


def _advance_op(agent: Agent, next_run_at: float | None, next_due_at: float | None, runs: int) -> tuple:
    """Advance the schedule past what this tick planned, if nobody else did first."""
    a = AgentTenantModel
    if next_run_at is None:  # past endAt: the schedule leaves the due index
        actions = [a.next_run_at.remove(), a.due_shard.remove(), a.due_at.remove()]
    else:
        actions = [a.next_run_at.set(next_run_at), a.due_at.set(next_due_at)]
    if runs:
        actions.append(a.active_runs.add(runs))
    return ("update", a(agent.tenant_id, agent.agent_id), actions, a.next_run_at == agent.next_run_at)


def _group_session_ids(group: TxGroup) -> list[str]:
    return [op[3].session_id for op in group.ops if len(op) > 3 and hasattr(op[3], "session_id")] + [group.key]
