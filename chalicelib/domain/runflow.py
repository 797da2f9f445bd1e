"""What happens to a run after an attempt ends, decided from a table. Pure.

``after_attempt`` maps (outcome, cancel requested, attempts left) to the next
state of the session; ``after_abandoned`` does the same for an attempt whose
worker stopped (its lease passed without an outcome). The worker and the
recovery sweep only execute what these return.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from chalicelib.domain.backoff import backoff_delay
from chalicelib.domain.model import ErrorCategory, SessionStatus


class Next(str, enum.Enum):
    SUCCEEDED = "SUCCEEDED"  # final
    RETRY = "RETRY"  # waits for its next attempt (RETRYING), then goes through admission again
    DEAD = "DEAD"  # final, in the DLQ
    CANCELLED = "CANCELLED"  # final

    @property
    def status(self) -> SessionStatus:
        return {
            Next.SUCCEEDED: SessionStatus.SUCCEEDED,
            Next.RETRY: SessionStatus.RETRYING,
            Next.DEAD: SessionStatus.DEAD,
            Next.CANCELLED: SessionStatus.CANCELLED,
        }[self]


@dataclass(frozen=True)
class Transition:
    next: Next
    error: dict[str, str] | None = None  # {category, message}
    next_attempt_at: float | None = None
    output: Any = None
    usage: dict[str, Any] | None = None  # what the agent reported it used in this attempt
    rate_limited_wait: bool = False  # a provider's "too many requests": waits without using a retry

    @property
    def final(self) -> bool:
        return self.next is not Next.RETRY


@dataclass(frozen=True)
class Backoff:
    base_seconds: float
    max_seconds: float
    rand: Callable[[], float]


CANCELLED_ERROR: dict[str, str] = {"category": ErrorCategory.CANCELLED.value, "message": "cancelled on request"}


def _error(category: ErrorCategory, message: str | None) -> dict[str, str]:
    return {"category": category.value, "message": (message or category.value)[:2000]}


def after_attempt(
    *,
    ok: bool,
    category: ErrorCategory | None,
    message: str | None,
    output: Any,
    retry_after: float | None,
    attempt: int,
    max_attempts: int,
    cancel_requested: bool,
    now: float,
    backoff: Backoff,
    usage: dict[str, Any] | None = None,
    rate_limited_waits: int = 0,
    max_rate_limited_waits: int = 0,
) -> Transition:
    """The table:

    | outcome                         | cancel requested | waits left | attempts left | next             |
    |---------------------------------|------------------|------------|---------------|------------------|
    | success                         | any              | any        | any           | SUCCEEDED        |
    | CANCELLED, or any failure       | yes              | any        | any           | CANCELLED        |
    | RATE_LIMITED                    | no               | yes        | any           | RETRY (a wait)   |
    | RATE_LIMITED                    | no               | no         | (as TRANSIENT)                   |
    | retryable failure               | no               | any        | yes           | RETRY            |
    | retryable failure               | no               | any        | no            | DEAD             |
    | permanent failure               | no               | any        | any           | DEAD             |

    ``rate_limited_waits``: the run's rate-limited waits so far (before this attempt). A wait
    is an attempt that does not count against ``max_attempts``: the attempts left are
    ``max_attempts - (attempt - rate_limited_waits)``. A wait lasts ``retry_after`` (capped at
    the backoff's maximum), else the backoff of the waits so far; once
    ``max_rate_limited_waits`` are used, a RATE_LIMITED failure counts as TRANSIENT.
    """
    if ok:
        return Transition(Next.SUCCEEDED, output=output, usage=usage)
    category = category or ErrorCategory.INTERNAL
    if cancel_requested or category is ErrorCategory.CANCELLED:
        return Transition(Next.CANCELLED, error=dict(CANCELLED_ERROR), output=output, usage=usage)
    if category is ErrorCategory.RATE_LIMITED:
        if rate_limited_waits < max_rate_limited_waits:
            delay = rate_limited_delay(rate_limited_waits + 1, retry_after, backoff)
            return Transition(Next.RETRY, error=_error(category, message), next_attempt_at=now + delay,
                              output=output, usage=usage, rate_limited_wait=True)
        category = ErrorCategory.TRANSIENT
        message = f"rate limited after {rate_limited_waits} waits: {message or 'too many requests'}"
    error = _error(category, message)
    if category.retryable and attempt - rate_limited_waits < max_attempts:
        delay = backoff_delay(max(1, attempt - rate_limited_waits), backoff.base_seconds, backoff.max_seconds,
                              retry_after=retry_after, rand=backoff.rand)
        return Transition(Next.RETRY, error=error, next_attempt_at=now + delay, output=output, usage=usage)
    return Transition(Next.DEAD, error=error, output=output, usage=usage)


def rate_limited_delay(wait: int, retry_after: float | None, backoff: Backoff) -> float:
    """How long rate-limited wait number ``wait`` (1-based) lasts: the provider's
    ``retry_after`` (capped at the backoff's maximum), else the backoff for that wait."""
    if retry_after is not None:
        return min(max(0.0, float(retry_after)), backoff.max_seconds)
    return backoff_delay(wait, backoff.base_seconds, backoff.max_seconds, rand=backoff.rand)


def waiting_rate_limited(status: str, stage: str | None, error: dict[str, Any] | None) -> bool:
    """A run that waits because its provider said "too many requests": RETRYING, not running,
    and its last attempt ended RATE_LIMITED (what ``waitingReason: RATE_LIMITED`` shows)."""
    return (status == "RETRYING" and stage is not None and error is not None
            and error.get("category") == ErrorCategory.RATE_LIMITED.value)


def after_abandoned(*, attempt: int, max_attempts: int, cancel_requested: bool, now: float,
                    backoff: Backoff, rate_limited_waits: int = 0) -> Transition:
    """An attempt whose worker stopped (crash, kill, timeout of the Lambda itself)."""
    return after_attempt(
        ok=False, category=ErrorCategory.INTERNAL,
        message=f"the worker stopped during attempt {attempt}", output=None, retry_after=None,
        attempt=attempt, max_attempts=max_attempts, cancel_requested=cancel_requested, now=now,
        backoff=backoff, rate_limited_waits=rate_limited_waits,
    )
