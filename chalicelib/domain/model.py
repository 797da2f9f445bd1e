"""Value types and policies. Pure: no AWS, no Chalice."""
from __future__ import annotations

import enum


class Priority(str, enum.Enum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"

    @property
    def rank(self) -> int:
        """0 is served first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


class SessionStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {SessionStatus.SUCCEEDED, SessionStatus.DEAD, SessionStatus.CANCELLED, SessionStatus.SKIPPED}
)
ACTIVE_STATUSES = frozenset({SessionStatus.QUEUED, SessionStatus.RUNNING, SessionStatus.RETRYING})


class Trigger(str, enum.Enum):
    SCHEDULE = "SCHEDULE"
    MANUAL = "MANUAL"
    REDRIVE = "REDRIVE"
    BACKFILL = "BACKFILL"  # a past fire run on request (same session id a scheduled run would get)


class ErrorCategory(str, enum.Enum):
    TRANSIENT = "TRANSIENT"
    RATE_LIMITED = "RATE_LIMITED"  # the provider said "too many requests": wait, without using a retry
    TIMEOUT = "TIMEOUT"
    AGENT_ERROR = "AGENT_ERROR"
    PERMANENT = "PERMANENT"
    CANCELLED = "CANCELLED"
    INTERNAL = "INTERNAL"

    @property
    def retryable(self) -> bool:
        return self not in (ErrorCategory.PERMANENT, ErrorCategory.CANCELLED)


class CatchupPolicy(str, enum.Enum):
    """What to do with fires missed while paused, disabled or down."""

    LATEST = "LATEST"  # run the latest missed fire once, if inside the catch-up window
    NONE = "NONE"  # run none of them
    ALL = "ALL"  # run all of them (bounded)


class OverlapPolicy(str, enum.Enum):
    """What to do with a fire while the same agent still has a run queued or running."""

    SKIP = "SKIP"
    QUEUE_ONE = "QUEUE_ONE"
    ALLOW = "ALLOW"
    CANCEL_PREVIOUS = "CANCEL_PREVIOUS"  # the earlier queued or running run is cancelled; this one starts


class SkipReason(str, enum.Enum):
    OVERLAP = "OVERLAP"
    CATCHUP_WINDOW = "CATCHUP_WINDOW"  # missed and outside the window / not the latest
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"
    OUTSIDE_WINDOW = "OUTSIDE_WINDOW"  # before startAt or after endAt
    EXCLUDED_DATE = "EXCLUDED_DATE"  # on one of the schedule's excludeDates (local)
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"  # the agent's daily budget was used up that day


class AgentKindName(str, enum.Enum):
    ECHO = "echo"
    SLEEP = "sleep"
    FAIL = "fail"
    HTTP = "http"
    LAMBDA = "lambda"
    WEBHOOK = "webhook"
