"""Callbacks of an attempt: who may call, what a call may do, and how an async attempt ends. Pure.

Every attempt gets its own callback token. The token names the agent (so the run is
found with one key lookup) and carries 256 random bits; only its SHA-256 is stored.
The run keeps the hash of its current attempt and of the one before, so a late call
of the previous attempt is told that attempt ended (409) rather than "unknown" (404).

Which call is allowed when (``judge``):

| the attempt named by the call   | call                       | answer                 |
|---------------------------------|----------------------------|------------------------|
| unknown, or the token is wrong  | any                        | 404                    |
| live (the run is RUNNING on it) | any                        | applied, 200           |
| ended                           | the complete/fail that     | 200 again, nothing     |
|                                 | ended it, with the same    | written                |
|                                 | body                       |                        |
| ended                           | anything else              | 409 RUN_FINISHED with  |
|                                 |                            | how it ended           |

The first final outcome of an attempt wins: a synchronous answer, ``complete``,
``fail``, the deadline, the heartbeat timeout or a cancel. Each writes the end of the
attempt under the condition that the attempt still owns the run (its claim token),
so whichever comes second finds it ended.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.domain.model import ErrorCategory, SessionStatus
from chalicelib.domain.runflow import Backoff, Transition, after_attempt

if TYPE_CHECKING:
    from chalicelib.domain.records import Session

TOKEN_BYTES = 32  # 256 bits of randomness (at least 128 are required)
MAX_TOKEN_CHARS = 300
MAX_DETAILS_BYTES = 32 * 1024
PROGRESS_EVENT_INTERVAL_SECONDS = 0.5  # as the built-in kinds' progress: at most one event per interval


class Action(str, enum.Enum):
    PROGRESS = "progress"
    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    FAIL = "fail"

    @property
    def final(self) -> bool:
        return self in (Action.COMPLETE, Action.FAIL)


class EndedBy(str, enum.Enum):
    """How an attempt ended, as a late callback is told."""

    COMPLETED = "COMPLETED"  # a complete callback, or a successful synchronous answer
    FAILED = "FAILED"  # a fail callback, or a failed synchronous answer
    DEADLINE = "DEADLINE"  # the attempt's deadline passed
    HEARTBEAT = "HEARTBEAT"  # no callback within heartbeatSeconds
    CANCELLED = "CANCELLED"  # the run was cancelled
    SUPERSEDED = "SUPERSEDED"  # its worker stopped and the run moved on, or a newer attempt runs


class Verdict(str, enum.Enum):
    APPLY = "APPLY"  # 200, the call takes effect
    REPEAT = "REPEAT"  # 200, the repeat of the call that ended the attempt
    FINISHED = "FINISHED"  # 409 RUN_FINISHED
    NOT_FOUND = "NOT_FOUND"  # 404


# --- tokens ------------------------------------------------------------------------------
def new_token(agent_id: str) -> str:
    """A fresh callback token: ``<agent id>.<256 random bits, URL-safe>``."""
    return f"{agent_id}.{secrets.token_urlsafe(TOKEN_BYTES)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_agent(token: str | None) -> str | None:
    """The agent id a token names, or None when it is not shaped like one of ours."""
    if not token or len(token) > MAX_TOKEN_CHARS or "." not in token:
        return None
    agent_id, _, secret = token.rpartition(".")
    if not agent_id or len(secret) < 22:  # 22 URL-safe characters: 128 bits
        return None
    return agent_id


def same_hash(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two stored hashes (None never matches)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def body_hash(action: Action, body: Any) -> str:
    """What identifies a complete/fail call: its action and its canonical JSON body."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{action.value}\x1f{text}".encode()).hexdigest()


# --- which attempt a call names, and what it may do ---------------------------------------------
@dataclass(frozen=True)
class AttemptState:
    """What the stored run says about the attempt a call names."""

    known: bool  # the attempt exists and the token is its own
    live: bool = False
    ended_by: EndedBy | None = None
    end_hash: str | None = None


def default_ended_by(status: SessionStatus) -> EndedBy:
    """How an attempt ended when the run did not record it (an end written before it did)."""
    if status is SessionStatus.SUCCEEDED:
        return EndedBy.COMPLETED
    if status is SessionStatus.CANCELLED:
        return EndedBy.CANCELLED
    return EndedBy.FAILED


def attempt_state(s: Session | None, attempt: int, given_hash: str) -> AttemptState:
    """The state of attempt ``attempt`` of run ``s`` (None: no such run), for a call whose
    token hashes to ``given_hash``. Both hashes the run keeps are compared in constant time."""
    if s is None or attempt < 1:
        return AttemptState(False)
    if attempt == s.attempt and same_hash(given_hash, s.callback_hash):
        ended_here = s.end_attempt == attempt
        if s.status is SessionStatus.RUNNING and s.claim and not ended_here:
            return AttemptState(True, live=True)
        if ended_here and s.ended_by:
            return AttemptState(True, ended_by=EndedBy(s.ended_by), end_hash=s.end_hash)
        return AttemptState(True, ended_by=default_ended_by(s.status))
    if attempt == s.attempt - 1 and same_hash(given_hash, s.prev_callback_hash):
        if s.end_attempt == attempt and s.ended_by:
            return AttemptState(True, ended_by=EndedBy(s.ended_by), end_hash=s.end_hash)
        return AttemptState(True, ended_by=EndedBy.SUPERSEDED)
    return AttemptState(False)


def judge(state: AttemptState, action: Action, call_hash: str | None) -> Verdict:
    """The table in this module's docstring."""
    if not state.known:
        return Verdict.NOT_FOUND
    if state.live:
        return Verdict.APPLY
    if action.final and call_hash is not None and same_hash(call_hash, state.end_hash):
        return Verdict.REPEAT
    return Verdict.FINISHED


# --- liveness ----------------------------------------------------------------------------------
def deadline_of(started_at: float, timeout_seconds: float) -> float:
    """An attempt's deadline: its start plus the run's timeout."""
    return started_at + float(timeout_seconds)


def async_lease(now: float, deadline: float, heartbeat_seconds: int | None) -> float:
    """How long an async attempt holds its slot without news: until its deadline, or until
    ``heartbeat_seconds`` after the last callback (from the ``202`` on), whichever is first."""
    if heartbeat_seconds:
        return min(deadline, now + heartbeat_seconds)
    return deadline


def expiry_reason(lease_until: float, deadline: float) -> EndedBy:
    """Why an async attempt whose lease passed ended: its deadline, or a missed heartbeat."""
    return EndedBy.DEADLINE if lease_until >= deadline - 1e-6 else EndedBy.HEARTBEAT


def after_expiry(reason: EndedBy, *, heartbeat_seconds: int | None, timeout_seconds: float, attempt: int,
                 max_attempts: int, cancel_requested: bool, now: float, backoff: Backoff) -> Transition:
    """An async attempt that ran out of time: a TIMEOUT through the outcome table (retried by policy)."""
    if reason is EndedBy.HEARTBEAT:
        message = f"no callback from the agent for {heartbeat_seconds} s (heartbeatSeconds)"
    else:
        message = f"the agent did not complete within {timeout_seconds:g} s (timeoutSeconds)"
    return after_attempt(ok=False, category=ErrorCategory.TIMEOUT, message=message, output=None, retry_after=None,
                         attempt=attempt, max_attempts=max_attempts, cancel_requested=cancel_requested, now=now,
                         backoff=backoff)


def after_fail(*, category: ErrorCategory, message: str, non_retryable: bool, retry_after: float | None,
               attempt: int, max_attempts: int, cancel_requested: bool, now: float, backoff: Backoff,
               rate_limited_waits: int = 0, max_rate_limited_waits: int = 0) -> Transition:
    """A ``fail`` callback through the outcome table; ``nonRetryable`` leaves no attempts (and
    no rate-limited waits)."""
    return after_attempt(ok=False, category=category, message=message, output=None, retry_after=retry_after,
                         attempt=attempt, max_attempts=attempt if non_retryable else max_attempts,
                         cancel_requested=cancel_requested, now=now, backoff=backoff,
                         rate_limited_waits=rate_limited_waits,
                         max_rate_limited_waits=0 if non_retryable else max_rate_limited_waits)


def allow_progress_event(last_event_at: float | None, now: float, percent: float,
                         interval: float = PROGRESS_EVENT_INTERVAL_SECONDS) -> bool:
    """The progress throttle across calls (the run keeps when it last published one):
    at most one event per ``interval``; the first and 100 % always pass."""
    return percent >= 100 or last_event_at is None or now - last_event_at >= interval


def ended_by_for(next_name: str, *, category: str | None = None) -> EndedBy:
    """How a synchronous answer ended its attempt, from the outcome table's decision."""
    if next_name == "SUCCEEDED":
        return EndedBy.COMPLETED
    if next_name == "CANCELLED" or category == ErrorCategory.CANCELLED.value:
        return EndedBy.CANCELLED
    if category == ErrorCategory.TIMEOUT.value:
        return EndedBy.DEADLINE
    return EndedBy.FAILED
