"""Brakes that act by themselves: auto-pause after consecutive dead runs, pause-until. Pure."""
from __future__ import annotations

import enum

MAX_PAUSE_AFTER_FAILURES = 100


class DisabledReason(str, enum.Enum):
    """Why the system (not a person) disabled a schedule; enabling it again clears the reason."""

    CONSECUTIVE_FAILURES = "CONSECUTIVE_FAILURES"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"


SYSTEM = "system"  # ``changedBy`` of schedule changes the system made itself


def pause_for_failures(pause_after: int | None, consecutive_failures: int, enabled: bool) -> bool:
    """Whether an agent's schedule is disabled now: it has ``pause_after`` set, the schedule is
    still enabled, and its runs ended DEAD at least that many times in a row (a success
    resets the count to 0)."""
    return pause_after is not None and enabled and consecutive_failures >= pause_after


def paused_at(fire_at: float, paused_until: float | None) -> bool:
    """A fire before ``pausedUntil`` is skipped (reason PAUSED); at or after it, it runs."""
    return paused_until is not None and fire_at < paused_until
