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
) -> Transition:
    """The table:

    | outcome                         | cancel requested | attempts left | next      |
    |---------------------------------|------------------|---------------|-----------|
    | success                         | any              | any           | SUCCEEDED |
    | CANCELLED, or any failure       | yes              | any           | CANCELLED |
    | retryable failure               | no               | yes           | RETRY     |
    | retryable failure               | no               | no            | DEAD      |
    | permanent failure               | no               | any           | DEAD      |
    """
    if ok:
        return Transition(Next.SUCCEEDED, output=output)
    category = category or ErrorCategory.INTERNAL
    if cancel_requested or category is ErrorCategory.CANCELLED:
        return Transition(Next.CANCELLED, error=dict(CANCELLED_ERROR), output=output)
    error = _error(category, message)
    if category.retryable and attempt < max_attempts:
        delay = backoff_delay(attempt, backoff.base_seconds, backoff.max_seconds,
                              retry_after=retry_after, rand=backoff.rand)
        return Transition(Next.RETRY, error=error, next_attempt_at=now + delay, output=output)
    return Transition(Next.DEAD, error=error, output=output)


def after_abandoned(*, attempt: int, max_attempts: int, cancel_requested: bool, now: float,
                    backoff: Backoff) -> Transition:
    """An attempt whose worker stopped (crash, kill, timeout of the Lambda itself)."""
    return after_attempt(
        ok=False, category=ErrorCategory.INTERNAL,
        message=f"the worker stopped during attempt {attempt}", output=None, retry_after=None,
        attempt=attempt, max_attempts=max_attempts, cancel_requested=cancel_requested, now=now,
        backoff=backoff,
    )
