"""Retry delays. Pure: the random source is passed in."""
from __future__ import annotations

import random as _random
from typing import Callable


def backoff_cap(attempt: int, base: float, cap: float) -> float:
    """Upper bound of the delay after failed attempt ``attempt`` (1-based):
    ``base * 2^(attempt-1)``, capped."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return min(cap, base * 2.0 ** min(attempt - 1, 60))


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = _random.random,
) -> float:
    """Full jitter in [0, backoff_cap]; a server's Retry-After is a floor (still capped)."""
    delay = rand() * backoff_cap(attempt, base, cap)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), cap))
    return delay
