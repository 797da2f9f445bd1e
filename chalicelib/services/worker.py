"""The worker: claim a run, execute it with a deadline, record the outcome.

Claims are conditional writes on the session (status and attempt), so a
duplicate delivery is dropped and counted. A run that fails with a retryable
error goes back to the pending set with ``nextAttemptAt`` (exponential backoff
with full jitter) and is re-admitted through the same admission as everything
else; the last failure (or a permanent one) makes the run DEAD and puts it in
the dead-letter queue. Every finished attempt releases its slot and admits the
next waiting run at once.
"""
from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

from chalicelib.agents.base import KindDeps
from chalicelib.agents.executor import Outcome, execute
from chalicelib.agents.registry import get_kind
from chalicelib.domain import events as ev
from chalicelib.domain.backoff import backoff_delay
from chalicelib.domain.model import ErrorCategory, OverlapPolicy, SessionStatus, Trigger
from chalicelib.domain.records import STAGE_PENDING, Session
from chalicelib.errors import ConditionFailed, SchedulerError, ValidationError

log = logging.getLogger("agent_scheduler.worker")

CANCEL_POLL_SECONDS = 1.0
EARLY_WAIT_SECONDS = 2.5  # a run delivered this early waits for its second
OVERLAP_RECHECK_SECONDS = 5.0  # QUEUE_ONE: how often a waiting fire looks again
SAFETY_MARGIN_SECONDS = 5.0  # left to the worker to record the outcome before Lambda stops it


@dataclass(frozen=True)
class Delivery:
    tenant_id: str
    agent_id: str
    session_id: str
    attempt: int

    @classmethod
    def parse(cls, body: dict) -> "Delivery":
        try:
            return cls(str(body["t"]), str(body["a"]), str(body["s"]), int(body["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError("body", f"not a run message: {exc}") from None


class RunContext:
    """What an agent kind sees: progress, cancellation, its deadline."""

    def __init__(self, worker: "Worker", session: Session, attempt: int, deadline: float) -> None:
        self.w = worker
        self.session = session
        self.agent_id = session.agent_id
        self.session_id = session.session_id
        self.attempt = attempt
        self.input = session.input
        self.deadline = deadline
        self.cancel_requested = False
        self._last_poll = 0.0
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
                s = self.w.c.sessions.get(self.agent_id, self.session_id)
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
        d = Delivery.parse(body)
        now = self.c.clock.now().timestamp()
        s = self.c.sessions.get(d.agent_id, d.session_id)
        if s is None or s.tenant_id != d.tenant_id:
            self._count("orphan")
            self.c.control.release([d.session_id])
            return "orphan"
        if s.status.finished:
            self._count("duplicate")
            self.c.control.release([d.session_id])
            return "duplicate"
        if s.status is SessionStatus.RUNNING:
            if s.run_lease_until is not None and s.run_lease_until > now:
                self._count("duplicate")
                return "duplicate"
            # The worker that ran it died: this delivery is the next attempt.
            self._count("abandoned")
            attempt = s.attempt + 1
        else:
            if s.attempt + 1 != d.attempt:
                self._count("duplicate")
                return "duplicate"
            attempt = d.attempt
        if s.cancel_requested:
            self._finish_cancelled(s, now)
            return "cancelled"
        if attempt > s.max_attempts:
            self._finish_dead(s, s.attempt, ErrorCategory.INTERNAL, "worker died during the last attempt", now)
            return "dead"

        agent = self.c.agents.get(s.tenant_id, s.agent_id)
        if agent is None:
            self._finish_dead(s, attempt, ErrorCategory.PERMANENT, "agent was deleted", now)
            return "dead"

        if self._overlaps(agent, s, now):
            return self._overlap(agent, s, now)

        # Start exactly on the run's second: SQS delays are whole seconds, sent with slack.
        early = s.eligible_at - now
        if 0 < early <= EARLY_WAIT_SECONDS:
            self.c.clock.sleep(early)
            now = self.c.clock.now().timestamp()
        budget = float(s.timeout_seconds)
        if remaining_ms is not None:
            budget = max(1.0, min(budget, remaining_ms / 1000.0 - SAFETY_MARGIN_SECONDS))
        running = s.with_(
            status=SessionStatus.RUNNING,
            attempt=attempt,
            started_at=now,
            stage=None,
            next_attempt_at=None,
            run_lease_until=now + budget + self.s.lease_margin_seconds,
            error=None,
        )
        try:
            self.c.sessions.save(running, expect_status=[s.status], expect_attempt=s.attempt)
        except ConditionFailed:
            self._count("duplicate")
            return "duplicate"
        self._count("started")
        self.c.events.publish(
            s.tenant_id,
            s.agent_id,
            ev.started(s.agent_id, s.session_id, attempt, now=now, scheduled_for=s.scheduled_for, trigger=s.trigger.value),
        )
        from chalicelib.services import metrics

        metrics.run_started(lateness_seconds=max(0.0, now - s.eligible_at))

        ctx = RunContext(self, running, attempt, deadline=now + budget)
        try:
            kind = get_kind(agent.kind)
            deps = KindDeps(lambda_client=self.c.client("lambda") if agent.kind == "lambda" else None)
            outcome = execute(kind, agent.config or {}, ctx, deps, budget)
        except Exception as exc:  # the executor should not raise; if it does, it's ours
            log.exception("executor failed")
            outcome = Outcome(ok=False, category=ErrorCategory.INTERNAL, message=f"{type(exc).__name__}: {exc}")
        if not outcome.ok and outcome.category is ErrorCategory.CANCELLED and not ctx.cancel_requested:
            outcome = Outcome(ok=False, category=ErrorCategory.TIMEOUT, message=f"timed out after {budget:g} s")
        end = self.c.clock.now().timestamp()
        self._record(running, outcome, end)
        return "succeeded" if outcome.ok else (outcome.category.value if outcome.category else "failed")

    # --- overlap, judged when a scheduled run starts -------------------------------------
    def _overlaps(self, agent, s: Session, now: float) -> bool:
        spec = agent.schedule
        if s.trigger is not Trigger.SCHEDULE or spec is None or spec.overlap_policy is OverlapPolicy.ALLOW:
            return False
        if agent.active_runs <= 1:
            return False
        for other in self.c.sessions.recent(s.agent_id, 20):
            if (
                other.session_id != s.session_id
                and other.status is SessionStatus.RUNNING
                and (other.run_lease_until or 0) > now
            ):
                return True
        return False

    def _overlap(self, agent, s: Session, now: float) -> str:
        if agent.schedule.overlap_policy is OverlapPolicy.QUEUE_ONE:
            wait = s.with_(stage=STAGE_PENDING, next_attempt_at=now + OVERLAP_RECHECK_SECONDS)
            try:
                self.c.sessions.save(wait, expect_status=[s.status], expect_attempt=s.attempt)
            except ConditionFailed:
                return "duplicate"
            self._count("overlap_wait")
            self._release_and_admit(s.session_id)
            return "waiting"
        skipped = s.with_(
            status=SessionStatus.SKIPPED, skip_reason="OVERLAP", finished_at=now, stage=None, next_attempt_at=None,
        )
        try:
            self.c.sessions.save(skipped, expect_status=[s.status], expect_attempt=s.attempt)
        except ConditionFailed:
            return "duplicate"
        self._count("overlap_skipped")
        self.c.events.skipped([skipped])  # Events: agent:skipped (the overlap policy dropped this fire).
        self.c.agents.add_active_runs(s.tenant_id, s.agent_id, -1)
        self._release_and_admit(s.session_id)
        return "skipped"

    # --- outcomes --------------------------------------------------------------------
    def _record(self, s: Session, outcome: Outcome, now: float) -> None:
        from chalicelib.services import metrics

        duration_ms = int(round((now - (s.started_at or now)) * 1000))
        if outcome.ok:
            done = s.with_(
                status=SessionStatus.SUCCEEDED, finished_at=now, duration_ms=duration_ms,
                output=outcome.output, run_lease_until=None, error=None,
            )
            if not self._save_finish(done, s):
                return
            self.c.agents.record_run_result(s.tenant_id, s.agent_id, failed=False, threshold=self.s.alert_after_failures)
            self._count("succeeded")
            metrics.run_finished("succeeded", duration_ms)
            self.c.events.publish(
                s.tenant_id, s.agent_id,
                ev.completed(s.agent_id, s.session_id, s.attempt, now=now, duration_ms=duration_ms, output=outcome.output),
            )
            self._release_and_admit(s.session_id)
            return
        category = outcome.category or ErrorCategory.INTERNAL
        message = (outcome.message or category.value)[:2000]
        if category is ErrorCategory.CANCELLED:
            self._finish_cancelled(s.with_(duration_ms=duration_ms), now)
            return
        if category.retryable and s.attempt < s.max_attempts:
            delay = backoff_delay(
                s.attempt, self.s.backoff_base_seconds, self.s.backoff_max_seconds,
                retry_after=outcome.retry_after, rand=self.rand,
            )
            nxt = now + delay
            retry = s.with_(
                status=SessionStatus.RETRYING, finished_at=None, duration_ms=duration_ms,
                error={"category": category.value, "message": message}, next_attempt_at=nxt,
                stage=STAGE_PENDING, run_lease_until=None, output=outcome.output,
            )
            if not self._save_finish(retry, s):
                return
            self._count("retrying")
            metrics.run_finished("failed", duration_ms)
            self.c.events.publish(
                s.tenant_id, s.agent_id,
                ev.failed(s.agent_id, s.session_id, s.attempt, now=now, category=category.value,
                          message=message, will_retry=True, next_attempt_at=nxt),
            )
            self._release_and_admit(s.session_id)
            return
        self._finish_dead(s.with_(duration_ms=duration_ms), s.attempt, category, message, now)

    def _save_finish(self, new: Session, old: Session) -> bool:
        try:
            self.c.sessions.save(new, expect_status=[SessionStatus.RUNNING], expect_attempt=old.attempt)
            return True
        except ConditionFailed:
            # The run was taken over (its lease expired): the newer attempt records the outcome.
            self._count("superseded")
            return False

    def _finish_dead(self, s: Session, attempt: int, category: ErrorCategory, message: str, now: float) -> None:
        from chalicelib.services import metrics

        dead = s.with_(
            status=SessionStatus.DEAD, attempt=attempt, finished_at=now,
            error={"category": category.value, "message": message},
            stage=None, run_lease_until=None, next_attempt_at=None, in_dlq=True, failed_at=now,
        )
        try:
            self.c.sessions.save(dead, expect_status=[s.status], expect_attempt=s.attempt)
        except ConditionFailed:
            self._count("superseded")
            return
        self.c.dlq.send({
            "t": s.tenant_id, "a": s.agent_id, "s": s.session_id, "n": attempt,
            "error": {"category": category.value, "message": message}, "failedAt": now,
        })
        self._count("dead")
        metrics.run_finished("dead", s.duration_ms or 0)
        self.c.events.publish(
            s.tenant_id, s.agent_id,
            ev.failed(s.agent_id, s.session_id, attempt, now=now, category=category.value,
                      message=message, will_retry=False, next_attempt_at=None),
        )
        raise_alert = self.c.agents.record_run_result(
            s.tenant_id, s.agent_id, failed=True, threshold=self.s.alert_after_failures
        )
        if raise_alert:
            self._alert(s, attempt, now)
        self._release_and_admit(s.session_id)

    def _alert(self, s: Session, attempt: int, now: float) -> None:
        n = self.s.alert_after_failures
        text = f"agent {s.agent_id} failed {n} runs in a row; last error in session {s.session_id}"
        try:
            self.c.alerts.publish(
                f"Agent Scheduler alert: {s.agent_id}",
                {"tenantId": s.tenant_id, "agentId": s.agent_id, "sessionId": s.session_id,
                 "consecutiveFailures": n, "message": text},
            )
        except SchedulerError:
            log.exception("alert publish failed")
        self._count("alerts")
        self.c.events.publish(
            s.tenant_id, s.agent_id,
            ev.alert(s.agent_id, s.session_id, attempt, now=now, consecutive_failures=n, message=text),
        )

    def _finish_cancelled(self, s: Session, now: float) -> None:
        done = s.with_(
            status=SessionStatus.CANCELLED, finished_at=now, stage=None, run_lease_until=None,
            next_attempt_at=None, error={"category": "CANCELLED", "message": "cancelled on request"},
        )
        try:
            self.c.sessions.save(done, expect_status=[s.status], expect_attempt=s.attempt)
        except ConditionFailed:
            return
        self._count("cancelled")
        self.c.agents.add_active_runs(s.tenant_id, s.agent_id, -1)
        self.c.events.publish(
            s.tenant_id, s.agent_id,
            ev.failed(s.agent_id, s.session_id, s.attempt, now=now, category="CANCELLED",
                      message="cancelled on request", will_retry=False, next_attempt_at=None),
        )
        self._release_and_admit(s.session_id)

    def _release_and_admit(self, session_id: str) -> None:
        self.c.control.release([session_id])
        try:
            self.c.dispatcher.admit_pending()
        except SchedulerError:
            log.exception("admission after release failed; the next tick admits")
