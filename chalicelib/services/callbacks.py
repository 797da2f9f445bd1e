"""The agents' callbacks: ``POST /api/callbacks/{sessionId}/{attempt}/{action}``.

No tenant token: the attempt's own callback token (``Authorization: Bearer``) is the
credential. The token names the agent, so the run is one consistent GetItem away; its
SHA-256 is compared in constant time with the hashes the run keeps (``domain.callbacks``
decides what the call may do). This process remembers the live attempts it has seen (by
run, attempt and token hash), so the next call of the same attempt skips the read: every
write below is conditional on exactly what it was decided from, so a stale memory only
costs a read when the write finds the run moved. Then one write:

- ``progress`` / ``heartbeat``: one conditional UpdateItem (the attempt still owns the run;
  an async attempt's lease moves to ``min(deadline, now + heartbeatSeconds)``);
- ``complete`` / ``fail``: the end-of-attempt transaction every end goes through (outcome,
  slot released or handed off, the agent's counts), conditional on the attempt's claim, so
  the first final outcome wins and a retried call can never end it twice.

A write that finds the run moved (another callback, the sweep, a cancel) reads again and
is judged again. Unknown runs and attempts and wrong tokens all answer the same 404.
"""
from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from chalicelib.agents.jsonsafe import bounded
from chalicelib.domain import callbacks as cb
from chalicelib.domain import events as ev
from chalicelib.domain.model import ErrorCategory
from chalicelib.domain.records import Session
from chalicelib.domain.runflow import Backoff, Transition, after_attempt
from chalicelib.errors import Conflict, NotFound, SchedulerError

log = logging.getLogger("agent_scheduler.callbacks")

MAX_ATTEMPT = 1_000_000
REMEMBERED = 10_000  # live attempts this process remembers
TRIES = 4  # reads and writes per call when other writers keep moving the run

class RunFinished(SchedulerError):
    """A callback of an attempt that has ended (other than a repeat of the call that ended it)."""

    status_code = 409
    code = "RUN_FINISHED"

    def __init__(self, status: str, ended_by: str) -> None:
        super().__init__(f"this attempt has ended ({ended_by}); the run is {status}")
        self.status = status
        self.ended_by = ended_by

    def to_body(self) -> dict:
        return {"code": self.code, "message": self.message, "status": self.status, "endedBy": self.ended_by}


def _unknown() -> NotFound:
    return NotFound("unknown session or attempt, or a wrong callback token")


@dataclass(frozen=True)
class Call:
    """A callback whose attempt exists and whose token is that attempt's (see ``open``)."""

    action: cb.Action
    attempt: int
    key: tuple  # (agent, run, attempt, token hash): what this process remembers it by
    given: str  # the token's hash
    seen: Session  # the run as last seen


class CallbackService:
    def __init__(self, container) -> None:
        self.c = container
        self.counters: dict[str, int] = {}
        self._live: OrderedDict[tuple, Session] = OrderedDict()  # (agent, run, attempt, token hash) -> run

    def _remember(self, key: tuple, s: Session | None) -> None:
        if s is None:
            self._live.pop(key, None)
            return
        self._live[key] = s
        self._live.move_to_end(key)
        while len(self._live) > REMEMBERED:
            self._live.popitem(last=False)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _backoff(self) -> Backoff:
        import random

        s = self.c.settings
        return Backoff(s.backoff_base_seconds, s.backoff_max_seconds, random.random)

    def open(self, session_id: str, attempt_text: str, action_text: str, token: str | None) -> Call:
        """The callback's attempt, if it exists and the token is its own; else NotFound (the
        same answer for an unknown run, attempt, action or token). The body is read after."""
        try:
            action = cb.Action(action_text)
            attempt = int(attempt_text)
        except ValueError:
            raise _unknown() from None
        agent_id = cb.token_agent(token)
        if agent_id is None or not 1 <= attempt <= MAX_ATTEMPT or not 0 < len(session_id) <= 100:
            raise _unknown()
        given = cb.token_hash(token or "")
        key = (agent_id, session_id, attempt, given)
        s = self._live.get(key)
        if s is None:
            s = self.c.runs.get(agent_id, session_id)
            if s is None or not cb.attempt_state(s, attempt, given).known:
                self._count("unknown")
                raise _unknown()
        return Call(action, attempt, key, given, s)

    def apply(self, call: Call, body: dict) -> dict:
        """Carry out a callback whose body the API layer has validated; answers
        ``{status, cancelRequested}`` or raises the error to answer (RunFinished, NotFound)."""
        action, attempt, key, given, s = call.action, call.attempt, call.key, call.given, call.seen
        agent_id, session_id = key[0], key[1]
        call_hash = cb.body_hash(action, body) if action.final else None
        nonce = uuid.uuid4().hex  # this request's own: a retry of its write is recognised, another's is not
        for _ in range(TRIES):
            if s is None:
                raise _unknown()
            state = cb.attempt_state(s, attempt, given)
            verdict = cb.judge(state, action, call_hash)
            if verdict is cb.Verdict.NOT_FOUND:
                raise _unknown()
            if verdict is cb.Verdict.REPEAT:
                self._count("repeat")
                return _answer(s)
            if verdict is cb.Verdict.FINISHED:
                self._count("finished")
                raise RunFinished(s.status.value, (state.ended_by or cb.EndedBy.SUPERSEDED).value)
            answer, stored = self._apply(s, action, body, call_hash, nonce)
            if answer is not None:
                self._remember(key, stored)
                self._count(action.value)
                return answer
            self._remember(key, None)
            s = self.c.runs.get(agent_id, session_id)  # it moved meanwhile: judge the call again
        raise Conflict("the run kept changing; try the callback again")

    # --- the writes ------------------------------------------------------------------------
    def _apply(self, s: Session, action: cb.Action, body: dict, call_hash: str | None,
               nonce: str) -> tuple[dict | None, Session | None]:
        """(the answer, the run as written while its attempt lives on), or (None, None) when
        the run moved meanwhile."""
        now = self.c.clock.now().timestamp()
        lease = None
        if s.is_async:
            lease = cb.async_lease(now, cb.deadline_of(s.started_at or now, s.timeout_seconds), s.heartbeat_seconds)
        if action is cb.Action.PROGRESS:
            percent = float(body["progress"])
            message = body.get("message") or ""
            publish = cb.allow_progress_event(s.progress_event_at, now, percent)
            stored = self.c.runs.touch(s, now, lease_until=lease, progress_event=publish,
                                       progress={"percent": percent, "message": message, "at": now})
            if stored is None:
                return None, None
            if publish:
                self.c.events.publish(s.tenant_id, s.agent_id, ev.progress(
                    s.agent_id, s.session_id, s.attempt, now=now, percent=percent, message=message))
            return _answer(stored), stored
        if action is cb.Action.HEARTBEAT:
            stored = self.c.runs.touch(s, now, lease_until=lease, heartbeat=True, details=body.get("details"),
                                       set_details="details" in body)
            return (None, None) if stored is None else (_answer(stored), stored)
        return self._end(s, action, body, call_hash, nonce, now), None

    def _end(self, s: Session, action: cb.Action, body: dict, call_hash: str | None, nonce: str,
             now: float) -> dict | None:
        from chalicelib.services.worker import end_attempt

        duration_ms = None if s.started_at is None else max(0, int(round((now - s.started_at) * 1000)))
        if action is cb.Action.COMPLETE:
            t: Transition = after_attempt(
                ok=True, category=None, message=None, output=bounded(body.get("output")), retry_after=None,
                attempt=s.attempt, max_attempts=s.max_attempts, cancel_requested=s.cancel_requested, now=now,
                backoff=self._backoff())
            ended_by = cb.EndedBy.COMPLETED
        else:
            t = cb.after_fail(
                category=ErrorCategory(body.get("category", ErrorCategory.AGENT_ERROR.value)), message=body["message"],
                non_retryable=bool(body.get("nonRetryable")), retry_after=body.get("retryAfterSeconds"),
                attempt=s.attempt, max_attempts=s.max_attempts, cancel_requested=s.cancel_requested, now=now,
                backoff=self._backoff(), rate_limited_waits=s.rate_limited_waits,
                max_rate_limited_waits=self.c.settings.max_rate_limited_waits)
            ended_by = cb.EndedBy.FAILED
        if not end_attempt(self.c, s, t, now, duration_ms, ended_by=ended_by.value, end_hash=call_hash,
                           usage=body.get("usage"), tx_nonce=nonce):
            return None
        return {"status": t.next.status.value, "cancelRequested": s.cancel_requested}


def _answer(s: Session) -> dict[str, Any]:
    return {"status": s.status.value, "cancelRequested": s.cancel_requested}
