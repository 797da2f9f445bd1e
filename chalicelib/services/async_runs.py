"""Async attempts: how they end without a callback (deadline, heartbeat, cancel), and the
agent's cancel notice.

An async attempt holds its slots while it runs; its lease (``run_lease_until``) is
``min(deadline, last callback + heartbeatSeconds)``. The tick's recovery sweep finds
expired leases through the active index and ends such an attempt here as ``TIMEOUT``
(retried by policy), through the same end-of-attempt transaction as any other, so the
slot is released or handed to the next waiting run. A cancel ends it at once the same
way and then tells the agent, best effort, with a signed ``agent.cancel``.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable

from chalicelib.domain import callbacks as cb
from chalicelib.domain.records import Agent, Session
from chalicelib.domain.runflow import CANCELLED_ERROR, Backoff, Next, Transition
from chalicelib.errors import SchedulerError

log = logging.getLogger("agent_scheduler.async_runs")

Signer = Callable[[Agent, str, bytes], "dict[str, str]"]
"""``sign(agent, msg_id, body) -> headers``: the signature headers of a delivery to ``agent``."""

CANCEL_NOTICE = "cancel-notice"  # the work-queue message kind that asks the worker to tell the agent

CANCEL_NOTICE_TIMEOUT_SECONDS = 5.0


def _duration_ms(s: Session, now: float) -> int | None:
    return None if s.started_at is None else max(0, int(round((now - s.started_at) * 1000)))


def expire_async(c, s: Session, now: float, backoff: Backoff) -> bool:
    """End an async attempt whose lease passed: TIMEOUT, ended by its DEADLINE or a missed
    HEARTBEAT. False when another end came first."""
    from chalicelib.services.worker import end_attempt

    deadline = cb.deadline_of(s.started_at or now, s.timeout_seconds)
    reason = cb.expiry_reason(s.run_lease_until or now, deadline)
    t = cb.after_expiry(reason, heartbeat_seconds=s.heartbeat_seconds, timeout_seconds=s.timeout_seconds,
                        attempt=s.attempt, max_attempts=s.max_attempts, cancel_requested=s.cancel_requested,
                        now=now, backoff=backoff)
    ended_by = cb.EndedBy.CANCELLED if t.next is Next.CANCELLED else reason
    # Only while the lease is the one seen expiring: a callback that arrived meanwhile keeps the run.
    done = end_attempt(c, s, t, now, _duration_ms(s, now), ended_by=ended_by.value, tx_nonce=uuid.uuid4().hex,
                       expect_lease=s.run_lease_until)
    if done:
        log.info("async attempt timed out", extra={"session_id": s.session_id, "attempt": s.attempt,
                                                    "ended_by": ended_by.value})
    return done


def cancel_async(c, s: Session, now: float, agent: Agent | None = None) -> bool:
    """End an async attempt CANCELLED at once (its slots freed), then tell the agent."""
    from chalicelib.services.worker import end_attempt

    t = Transition(Next.CANCELLED, error=dict(CANCELLED_ERROR))
    if not end_attempt(c, s, t, now, _duration_ms(s, now), ended_by=cb.EndedBy.CANCELLED.value,
                       tx_nonce=uuid.uuid4().hex):
        return False
    try:
        agent = agent or c.agents.get(s.tenant_id, s.agent_id)
    except SchedulerError:
        agent = None
    if agent is not None and (agent.config or {}).get("url"):
        post_cancel_notice(c, s)
    return True


def post_cancel_notice(c, s: Session) -> None:
    """Ask a worker to send the agent its signed ``agent.cancel``: only the worker may read
    agents' signing secrets. Best effort: a failure to enqueue is logged and counted."""
    try:
        c.work_queue.send({"k": CANCEL_NOTICE, "t": s.tenant_id, "a": s.agent_id, "s": s.session_id, "n": s.attempt})
    except SchedulerError as exc:
        from chalicelib.services import metrics

        metrics.cancel_notice_failed()
        log.warning("agent.cancel not queued: %s", exc, extra={"session_id": s.session_id, "attempt": s.attempt})


def send_cancel_notice(c, body: dict) -> str:
    """The worker's side of :func:`post_cancel_notice`."""
    try:
        agent = c.agents.get(str(body["t"]), str(body["a"]))
    except SchedulerError:
        return "notice-failed"
    if agent is None:
        return "notice-gone"
    ok = c.cancel_notifier.notify(agent, str(body["s"]), int(body["n"]))
    return "notice-sent" if ok else "notice-failed"


class CancelNotifier:
    """Sends ``{"type":"agent.cancel","sessionId","attempt"}`` to an async agent's URL, signed by
    ``sign`` (a seam: the per-agent signing secret lives with the webhook contract). Best
    effort: a failure is logged and counted, never raised."""

    def __init__(self, http: Any, sign: Callable[[], Signer | None]) -> None:
        self.http = http  # a GuardedHttp: the agent's URL obeys the same reach rules as its runs
        self._sign = sign
        self.sent = 0
        self.failed = 0

    def notify(self, agent: Agent, session_id: str, attempt: int) -> bool:
        url = (agent.config or {}).get("url")
        if not isinstance(url, str) or not url:
            return False  # nothing to call (an agent without a URL learns it from its callbacks)
        body = json.dumps({"type": "agent.cancel", "sessionId": session_id, "attempt": attempt},
                          separators=(",", ":")).encode()
        try:
            sign = self._sign()
            if sign is None:
                raise RuntimeError("no signer is configured for agent deliveries")
            headers = {"Content-Type": "application/json", **sign(agent, session_id, body)}
            resp = self.http.request("POST", url, headers=headers, body=body,
                                     timeout=CANCEL_NOTICE_TIMEOUT_SECONDS, max_body=1024)
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"the agent answered {resp.status}")
            self.sent += 1
            return True
        except Exception as exc:  # noqa: BLE001 - best effort: a cancel never fails on its notice
            self.failed += 1
            from chalicelib.services import metrics

            metrics.cancel_notice_failed()
            log.warning("agent.cancel not delivered: %s", type(exc).__name__,
                        extra={"agent_id": agent.agent_id, "session_id": session_id, "attempt": attempt})
            return False
