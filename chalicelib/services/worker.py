"""The worker: claim a run, execute it with a deadline, end the attempt.

Common path, three requests of our own: the claim (one conditional UpdateItem
that returns the session, so the run is never read first), the agent (cached
by this process), and the end of the attempt (one transaction: the outcome,
the slot released or handed to the next waiting run, the agent's counts).

A claim that fails is classified from the stored session: another live
attempt owns it, it finished, it waits again, or its last attempt was
abandoned (lease passed), which ends that attempt as failed so the run goes
back through admission; a message is only dropped when the session is final,
gone, or provably owned by another live attempt. What happens after an attempt
is decided by ``domain.runflow``; this module executes it.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import uuid
from dataclasses import dataclass

from chalicelib.agents.executor import Outcome, execute
from chalicelib.agents.registry import get_kind
from chalicelib.domain import callbacks
from chalicelib.domain import events as ev
from chalicelib.domain.admission import Admit, send_delay
from chalicelib.domain.model import ErrorCategory, OverlapPolicy, SessionStatus
from chalicelib.domain.records import STAGE_ADMITTED, STAGE_PENDING, Session
from chalicelib.domain.runflow import Backoff, Next, Transition, after_abandoned, after_attempt
from chalicelib.errors import SchedulerError, ValidationError, WaitingHint
from chalicelib.services.async_runs import CANCEL_NOTICE, send_cancel_notice

log = logging.getLogger("agent_scheduler.worker")

CANCEL_POLL_SECONDS = 5.0  # a running agent learns of a cancel within this
EARLY_WAIT_SECONDS = 2.5  # a run delivered this early waits for its second
SAFETY_MARGIN_SECONDS = 5.0  # left to the worker to record the outcome before Lambda stops it


@dataclass(frozen=True)
class Delivery:
    tenant_id: str
    agent_id: str
    session_id: str
    attempt: int
    eligible_at: float | None = None
    timeout_seconds: float | None = None
    check_overlap: bool = False
    waiting: bool = False

    @classmethod
    def parse(cls, body: dict) -> "Delivery":
        try:
            return cls(
                str(body["t"]), str(body["a"]), str(body["s"]), int(body["n"]),
                float(body["e"]) if body.get("e") is not None else None,
                float(body["x"]) if body.get("x") is not None else None,
                bool(body.get("o")), bool(body.get("w")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError("body", f"not a run message: {exc}") from None


class RunContext:
    """What an agent kind sees: progress, cancellation, its deadline."""

    def __init__(self, worker: "Worker", session: Session, attempt: int, deadline: float, *,
                 agent=None, callback: dict | None = None) -> None:
        self.w = worker
        self.agent = agent  # the Agent being run (id, name, config), or None
        self.callback = callback  # {url, token, heartbeatSeconds} of this attempt, or None
        self.session = session
        self.tenant_id = session.tenant_id
        self.agent_id = session.agent_id
        self.session_id = session.session_id
        self.attempt = attempt
        self.input = session.input
        self.deadline = deadline
        self.cancel_requested = False
        self._last_poll = self._now()
        self._limiter = ev.ProgressLimiter(0.5)
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self.w.c.clock.now().timestamp()

    def progress(self, percent: float, message: str = "") -> None:
        now = self._now()
        with self._lock:
            if not self._limiter.allow(now, percent):
                return
        self.w.c.events.publish(
            self.session.tenant_id,
            self.agent_id,
            ev.progress(self.agent_id, self.session_id, self.attempt, now=now, percent=percent, message=message),
        )

    def deadline_passed(self) -> bool:
        return self._now() >= self.deadline

    def cancelled(self) -> bool:
        if self.cancel_requested or self.deadline_passed():
            return True
        now = self._now()
        if now - self._last_poll >= CANCEL_POLL_SECONDS:
            self._last_poll = now
            try:
                s = self.w.c.runs.get(self.agent_id, self.session_id)
                self.cancel_requested = s is None or s.cancel_requested
            except SchedulerError:
                pass
        return self.cancel_requested

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - self._now())

    def sleep(self, seconds: float) -> bool:
        end = self._now() + max(0.0, seconds)
        while True:
            if self.cancelled():
                return False
            left = end - self._now()
            if left <= 0:
                return True
            self.w.c.clock.sleep(min(0.2, left, max(self.remaining_seconds(), 0.001)))


def callback_url(settings, session_id: str, attempt: int) -> str:
    """Where the agent reports on this attempt (``<action>`` is appended)."""
    return f"{settings.callback_base}/callbacks/{session_id}/{attempt}"


def _backoff(settings, rand) -> Backoff:
    return Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds, rand)


def end_attempt(c, s: Session, t: Transition, now: float, duration_ms: int | None, *,
                waiting: bool = False, counters: dict | None = None, ended_by: str | None = None,
                end_hash: str | None = None, usage: dict | None = None, tx_nonce: str = "",
                expect_lease: float | None = None) -> bool:
    """Execute the end of an attempt of a RUNNING run: the transition in one write (the slot
    released, or handed to the first waiting run), then the DLQ copy, events and metrics.
    Returns False when the attempt no longer owned the run (another end came first: a
    callback, the deadline, a cancel). ``ended_by``/``end_hash``/``usage``: see RunStore.finish."""
    cb = dict(ended_by=ended_by, end_hash=end_hash, usage=usage, tx_nonce=tx_nonce, expect_lease=expect_lease)
    from chalicelib.services import metrics

    if usage is not None and t.usage is None:  # reported by callback: it counts like an answer's
        t = dataclasses.replace(t, usage=usage)
    charge = _budget_charge(c, s, t, now, duration_ms)
    keep = _keep_for_retry(c, s, t, now)
    # A retry keeps its slot only if no waiting run comes first: always look (retries are rare;
    # the hint alone can lag a run the tick has just created).
    hand = _next_waiting(c, s, now) if ((waiting or keep is not None) and s.slot) else None
    if keep is not None and hand is not None and _order(keep.candidate) < _order(hand[1].candidate):
        hand = None  # the retry itself is first in line: it keeps its slot
    elif hand is not None:
        keep = None
    try:
        res = c.runs.finish(s, t, now, duration_ms, hand_off=hand, keep=keep,
                            release_if_idle=hand is None and keep is None and bool(s.slot), charge=charge, **cb)
    except WaitingHint:
        hand = _next_waiting(c, s, now)
        if keep is not None and (hand is None or _order(keep.candidate) < _order(hand[1].candidate)):
            res = c.runs.finish(s, t, now, duration_ms, keep=None, hand_off=None, charge=charge, **cb)
            keep = None
        else:
            keep = None
            res = c.runs.finish(s, t, now, duration_ms, hand_off=hand, charge=charge, **cb)
        if hand is None and not _any_waiting(c, now):
            c.runs.set_waiting([s.slot], False)  # nothing could start: the hint was stale
    if not res.ok:
        if counters is not None:
            counters["superseded"] = counters.get("superseded", 0) + 1
        return False
    if hand is not None and res.handed_off is None and not res.kept:
        c.dispatcher.admit_pending()  # the hand-off did not happen (a keyed limit, a race): admission decides
    t = res.applied or t
    if res.kept and keep is not None:
        c.dispatcher.send_one(s.with_(status=SessionStatus.RETRYING, stage=STAGE_ADMITTED, next_attempt_at=t.next_attempt_at,
                                      run_lease_until=keep.lease_until), keep.lease_until)
    if res.handed_off is not None:
        nxt = res.handed_off
        lease = hand[1].lease_until
        if hand[1].start_at is not None:  # a throttle window moved its start
            nxt = nxt.with_(next_attempt_at=hand[1].start_at)
        c.dispatcher.send_one(nxt.with_(slot=s.slot, stage=STAGE_ADMITTED, run_lease_until=lease), lease,
                              waiting=True)
    final = t.next
    if t.error and t.error.get("category") == "CANCELLED" and final is not Next.CANCELLED:
        final = Next.CANCELLED
    if final is Next.SUCCEEDED:
        metrics.run_finished("succeeded", duration_ms or 0)
        c.events.publish(s.tenant_id, s.agent_id, ev.completed(
            s.agent_id, s.session_id, s.attempt, now=now, duration_ms=duration_ms or 0, output=t.output))
    elif final is Next.RETRY:
        metrics.run_finished("failed", duration_ms or 0)
        c.events.publish(s.tenant_id, s.agent_id, ev.failed(
            s.agent_id, s.session_id, s.attempt, now=now, category=t.error["category"],
            message=t.error["message"], will_retry=True, next_attempt_at=t.next_attempt_at))
    elif final is Next.CANCELLED:
        c.events.publish(s.tenant_id, s.agent_id, ev.failed(
            s.agent_id, s.session_id, s.attempt, now=now, category="CANCELLED",
            message="cancelled on request", will_retry=False, next_attempt_at=None))
    else:
        _dead_side_effects(c, s, t, now, duration_ms)
    if final is not Next.RETRY:
        from chalicelib.services import brakes

        brakes.after_run(c, s, final is Next.DEAD, charge, now)
    return True


def _budget_charge(c, s: Session, t: Transition, now: float, duration_ms: int | None):
    """What this end of an attempt adds to the agent's budget day (None: no budget)."""
    from chalicelib.domain.budget import charge_for

    try:
        agent = c.agents.get_cached(s.tenant_id, s.agent_id, now)
    except SchedulerError:
        log.exception("agent not read; the attempt is not counted against its budget")
        return None
    if agent is None or agent.budget is None:
        return None
    return charge_for(agent.budget, now=now, final=t.final, duration_ms=duration_ms, usage=t.usage)


def _dead_side_effects(c, s: Session, t: Transition, now: float, duration_ms: int | None) -> None:
    from chalicelib.services import metrics

    error = t.error or {"category": "INTERNAL", "message": "failed"}
    try:
        c.dlq.send({"t": s.tenant_id, "a": s.agent_id, "s": s.session_id, "n": s.attempt,
                    "error": error, "failedAt": now})
    except SchedulerError:  # the session is DEAD and listed by GET /api/dlq either way
        log.exception("DLQ copy not sent", extra={"session_id": s.session_id})
    metrics.run_finished("dead", duration_ms or 0)
    c.events.publish(s.tenant_id, s.agent_id, ev.failed(
        s.agent_id, s.session_id, s.attempt, now=now, category=error["category"],
        message=error["message"], will_retry=False, next_attempt_at=None))
    threshold = c.settings.alert_after_failures
    try:
        if c.runs.raise_alert_once(s.tenant_id, s.agent_id, threshold):
            text = f"agent {s.agent_id} failed {threshold} runs in a row; last error in session {s.session_id}"
            try:
                c.alerts.publish(f"Agent Scheduler alert: {s.agent_id}", {
                    "tenantId": s.tenant_id, "agentId": s.agent_id, "sessionId": s.session_id,
                    "consecutiveFailures": threshold, "message": text})
            except SchedulerError:
                log.exception("alert publish failed")
            c.events.publish(s.tenant_id, s.agent_id, ev.alert(
                s.agent_id, s.session_id, s.attempt, now=now, consecutive_failures=threshold, message=text))
    except SchedulerError:
        log.exception("alert check failed")


def _any_waiting(c, now: float) -> bool:
    """Runs wait (eligible within the lookahead), even if keyed limits hold them all back: the
    hint stays on so the run that frees their limit looks for them when it ends."""
    until = now + c.settings.lookahead_seconds
    return any(p.eligible_at <= until for p in c.runs.pending(want=1, eligible_until=until))


def _order(c) -> tuple:
    return c.order_key


def _keep_for_retry(c, s: Session, t: Transition, now: float) -> Admit | None:
    """A retry due within the lookahead may keep its slot (sent again with its delay)."""
    from chalicelib.domain.admission import Candidate

    if t.next is not Next.RETRY or not s.slot or t.next_attempt_at is None:
        return None
    if t.next_attempt_at > now + c.settings.lookahead_seconds:
        return None
    cand = Candidate(s.session_id, s.tenant_id, s.agent_id, s.priority, t.next_attempt_at, s.timeout_seconds,
                     s.attempt + 1)
    lease = max(now, t.next_attempt_at) + c.settings.resend_grace_seconds
    return Admit(cand, send_delay(t.next_attempt_at, now), s.slot, lease)


def _next_waiting(c, s: Session, now: float) -> tuple[Session, Admit] | None:
    """The waiting run admission would start next in the finishing run's place (fairness,
    aging and keyed limits as admission judges them, the finishing run's keys counted as given
    back), if one may start within the lookahead."""
    from chalicelib.domain.admission import Candidate, SlotShard, plan_admission
    from chalicelib.services.dispatch import PENDING_READ_EXTRA, PENDING_READ_FACTOR

    until = now + c.settings.lookahead_seconds
    pending = c.runs.pending(want=PENDING_READ_FACTOR + PENDING_READ_EXTRA, eligible_until=until)
    by_id = {p.session_id: p for p in pending if p.session_id != s.session_id}
    waiting = [Candidate(p.session_id, p.tenant_id, p.agent_id, p.priority, p.eligible_at, p.timeout_seconds,
                         p.attempt + 1, backfill=p.trigger.value == "BACKFILL") for p in by_id.values()
               if p.eligible_at <= until]
    if not waiting:
        return None
    cands, counters = c.flow.with_limits(waiting, now)
    for k in s.holds:
        counters[k] = max(0, counters.get(k, 0) - 1)
    plan = plan_admission(cands, [SlotShard(s.slot or "", 0, 1)], now=now, lookahead=c.settings.lookahead_seconds,
                          claim_grace=c.settings.resend_grace_seconds, counters=counters,
                          aging_seconds=c.settings.priority_aging_seconds)
    if not plan.admit:
        return None
    a = plan.admit[0]
    return by_id[a.candidate.session_id], a


class Worker:
    def __init__(self, container, rand=random.random) -> None:
        self.c = container
        self.s = container.settings
        self.rand = rand
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # --- one message -----------------------------------------------------------------
    def handle(self, body: dict, remaining_ms: int | None = None) -> str:
        """Process one delivery; returns what happened. Raises only to get a redelivery."""
        from chalicelib import observability

        if body.get("k") == CANCEL_NOTICE:  # a cancelled async run: tell its agent, signed
            outcome = send_cancel_notice(self.c, body)
            self._count(outcome)
            return outcome
        d = Delivery.parse(body)
        with observability.bind_run(tenant_id=d.tenant_id, agent_id=d.agent_id, session_id=d.session_id,
                                    attempt=d.attempt, fire_time=d.eligible_at):
            return self._handle(d, remaining_ms)

    def _handle(self, d: Delivery, remaining_ms: int | None) -> str:
        now = self.c.clock.now().timestamp()

        if d.check_overlap:
            verdict = self._overlap(d, now)
            if verdict is not None:
                return verdict

        # Start exactly on the run's second: SQS delays are whole seconds, sent with slack.
        if d.eligible_at is not None and 0 < d.eligible_at - now <= EARLY_WAIT_SECONDS:
            self.c.clock.sleep(d.eligible_at - now)
            now = self.c.clock.now().timestamp()
        budget = float(d.timeout_seconds or self.s.lease_margin_seconds)
        if remaining_ms is not None:
            budget = max(1.0, min(budget, remaining_ms / 1000.0 - SAFETY_MARGIN_SECONDS))
        token = uuid.uuid4().hex
        lease = now + budget + self.s.lease_margin_seconds
        cb_token = callbacks.new_token(d.agent_id)  # this attempt's callback token; only its hash is stored
        res = self.c.runs.claim(d.agent_id, d.session_id, d.attempt, token, now, lease,
                                callback_hash=callbacks.token_hash(cb_token))
        if not res.ok:
            return self._not_claimed(d, res.session, now)
        s = res.session
        if s is None or s.tenant_id != d.tenant_id:  # pragma: no cover - the claim returns the stored run
            self._count("orphan")
            return "orphan"
        if s.timeout_seconds and float(s.timeout_seconds) < budget:
            budget = float(s.timeout_seconds)
        self._count("started")
        self.c.events.publish(
            s.tenant_id, s.agent_id,
            ev.started(s.agent_id, s.session_id, s.attempt, now=now, scheduled_for=s.scheduled_for,
                       trigger=s.trigger.value),
        )
        from chalicelib.services import metrics

        metrics.run_started(lateness_seconds=max(0.0, now - s.eligible_at))

        agent = self.c.agents.get_cached(s.tenant_id, s.agent_id, now)
        if agent is None:
            t = Transition(Next.DEAD, error={"category": ErrorCategory.PERMANENT.value, "message": "agent was deleted"})
            end_attempt(self.c, s, t, now, 0, counters=self.counters)
            self._count("dead")
            return "dead"

        ctx = RunContext(self, s, s.attempt, deadline=now + budget, agent=agent, callback={
            "url": callback_url(self.s, s.session_id, s.attempt),
            "token": cb_token,
            "heartbeatSeconds": agent.heartbeat_seconds,
        })
        try:
            kind = get_kind(agent.kind)
            deps = self.c.kind_deps(agent.kind)
            outcome = execute(kind, agent.config or {}, ctx, deps, budget)
        except Exception as exc:  # the executor should not raise; if it does, it's ours
            log.exception("executor failed")
            outcome = Outcome(ok=False, category=ErrorCategory.INTERNAL, message=f"{type(exc).__name__}: {exc}")
        if not outcome.ok and outcome.category is ErrorCategory.CANCELLED and not ctx.cancel_requested:
            outcome = Outcome(ok=False, category=ErrorCategory.TIMEOUT, message=f"timed out after {budget:g} s")
        end = self.c.clock.now().timestamp()
        if outcome.accepted:
            return self._accepted(s, agent, ctx, end)
        duration_ms = int(round((end - now) * 1000))
        t = after_attempt(
            ok=outcome.ok, category=outcome.category, message=outcome.message, output=outcome.output,
            retry_after=outcome.retry_after, attempt=s.attempt, max_attempts=s.max_attempts,
            cancel_requested=ctx.cancel_requested, now=end, backoff=_backoff(self.s, self.rand),
            usage=outcome.usage, rate_limited_waits=s.rate_limited_waits,
            max_rate_limited_waits=self.s.max_rate_limited_waits,
        )
        if not end_attempt(self.c, s, t, end, duration_ms, waiting=d.waiting, counters=self.counters,
                           usage=outcome.usage):
            return "superseded"
        if outcome.category is ErrorCategory.RATE_LIMITED:
            self._block_pools(s, agent, t, outcome.retry_after, end)
        name = {Next.SUCCEEDED: "succeeded", Next.RETRY: "retrying", Next.DEAD: "dead", Next.CANCELLED: "cancelled"}[t.next]
        self._count(name)
        return "succeeded" if outcome.ok else (outcome.category.value if outcome.category else "failed")

    def _block_pools(self, s: Session, agent, t: Transition, retry_after: float | None, now: float) -> None:
        """A provider's rate limit backs off every agent that shares the agent's pools: no new run
        of them starts before the time this run waits for (runs already started go on)."""
        pools = tuple(getattr(agent, "pools", ()) or ())
        until = t.next_attempt_at if t.next_attempt_at is not None else now + (retry_after or 0.0)
        if not pools or until <= now:
            return
        try:
            self.c.pool_service.block(s.tenant_id, pools, until)
        except SchedulerError as exc:  # the run's own wait holds; the shared back-off is best effort
            log.warning("pools not blocked after a rate limit: %s", exc)

    def _accepted(self, s: Session, agent, ctx: RunContext, now: float) -> str:
        """The agent took the run asynchronously (it answered 202): the run stays RUNNING,
        holding its slots, under the heartbeat/deadline lease; nobody waits for it."""
        from chalicelib.services.async_runs import cancel_async

        deadline = callbacks.deadline_of(s.started_at if s.started_at is not None else now, s.timeout_seconds)
        lease = callbacks.async_lease(now, deadline, agent.heartbeat_seconds)
        stored = self.c.runs.accept(s, lease, agent.heartbeat_seconds)
        if stored is None:  # a callback (or the sweep) ended the attempt before its 202 was recorded
            self._count("superseded")
            return "superseded"
        if stored.cancel_requested or ctx.cancel_requested:  # cancelled while its request was open
            cancel_async(self.c, stored, now, agent=agent)
            self._count("cancelled")
            return "cancelled"
        self._count("accepted")
        return "accepted"

    def _not_claimed(self, d: Delivery, s: Session | None, now: float) -> str:
        """Why the claim failed, and what to do about it."""
        if s is None or s.tenant_id != d.tenant_id:
            self._count("orphan")
            return "orphan"
        if s.status.finished:
            self._count("duplicate")
            return "duplicate"
        if s.status is SessionStatus.RUNNING:
            if (s.run_lease_until or 0) > now:
                self._count("duplicate")  # another live attempt owns it
                return "duplicate"
            if s.is_async:  # an async attempt out of time: TIMEOUT (deadline or heartbeat)
                from chalicelib.services.async_runs import expire_async

                expire_async(self.c, s, now, _backoff(self.s, self.rand))
                self._count("expired")
                return "expired"
            # The worker that ran it stopped: end that attempt; the run goes back through admission.
            t = after_abandoned(attempt=s.attempt, max_attempts=s.max_attempts,
                                cancel_requested=s.cancel_requested, now=now, backoff=_backoff(self.s, self.rand),
                                rate_limited_waits=s.rate_limited_waits)
            end_attempt(self.c, s, t, now, None, counters=self.counters, ended_by="SUPERSEDED")
            self._count("abandoned")
            return "abandoned"
        if s.stage == STAGE_ADMITTED and s.cancel_requested:
            self.c.runs.cancel_waiting(s, now)
            self._count("cancelled")
            return "cancelled"
        self._count("duplicate")  # an older message of a run that waits again, or a later attempt's
        return "duplicate"

    # --- overlap, judged when a scheduled run starts -------------------------------------
    def _overlap(self, d: Delivery, now: float) -> str | None:
        agent = self.c.agents.get_cached(d.tenant_id, d.agent_id, now)
        spec = agent.schedule if agent else None
        if spec is None or spec.overlap_policy is OverlapPolicy.ALLOW:
            return None
        if spec.overlap_policy is OverlapPolicy.CANCEL_PREVIOUS:
            self._cancel_previous(d, now)
            return None
        others = [o for o in self.c.sessions.recent(d.agent_id, 20)
                  if o.session_id != d.session_id and o.status is SessionStatus.RUNNING
                  and (o.run_lease_until or 0) > now]
        if not others:
            return None
        s = self.c.runs.get(d.agent_id, d.session_id)
        if s is None or s.stage != STAGE_ADMITTED or s.attempt + 1 != d.attempt:
            return None  # let the claim classify it
        if spec.overlap_policy is OverlapPolicy.QUEUE_ONE:
            # Wait until the running one is due to end (not a poll every few seconds).
            until = min(o.run_lease_until or now for o in others)
            if self.c.runs.wait_again(s, max(until, now + 1), now):
                self._count("overlap_wait")
                return "waiting"
            return "duplicate"
        if self.c.runs.end_waiting(s, now, SessionStatus.SKIPPED, skip_reason="OVERLAP"):
            self._count("overlap_skipped")
            self.c.events.skipped([s.with_(status=SessionStatus.SKIPPED, skip_reason="OVERLAP")])
            return "skipped"
        return "duplicate"

    def _cancel_previous(self, d: Delivery, now: float) -> int:
        """Overlap CANCEL_PREVIOUS: every earlier run of the agent still queued or running is
        cancelled (through the ordinary cancel path) before this one starts."""
        from chalicelib.domain.model import ACTIVE_STATUSES

        n = 0
        for o in self.c.sessions.recent(d.agent_id, 20):
            if o.session_id >= d.session_id or o.status not in ACTIVE_STATUSES or o.tenant_id != d.tenant_id:
                continue
            for _ in range(3):
                try:
                    done = self.c.dispatcher.cancel(o)
                except SchedulerError:
                    log.exception("earlier run not cancelled", extra={"session_id": o.session_id})
                    break
                if done is not None:
                    n += 1
                    break
                o = self.c.runs.get(o.agent_id, o.session_id)
                if o is None or o.status.finished:
                    break
        if n:
            self._count("overlap_cancelled")
        return n


__all__ = ["Worker", "Delivery", "RunContext", "end_attempt", "STAGE_PENDING"]
