"""Stored records as plain values. Adapters convert to and from these."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.domain.budget import Budget
from chalicelib.domain.model import Priority, SessionStatus, Trigger
from chalicelib.domain.schedule import ScheduleSpec


@dataclass(frozen=True)
class Agent:
    tenant_id: str
    agent_id: str
    name: str
    kind: str
    config: dict[str, Any]
    timeout_seconds: int
    max_retries: int
    created_at: float
    updated_at: float
    description: str | None = None
    schedule: ScheduleSpec | None = None
    next_run_at: float | None = None
    active_runs: int = 0
    consecutive_failures: int = 0
    alerted: bool = False
    schedule_version: int = 0  # how many times the schedule changed (its history's latest version)
    labels: dict[str, str] = field(default_factory=dict)
    # flow control: the agent's own limits (its implicit pool) and the shared pools it draws from
    max_concurrency: int | None = None
    throttle: dict[str, int] | None = None  # {limit, periodSeconds}
    pools: tuple[str, ...] = ()
    signing_keys: dict[str, Any] | None = None  # webhook agents: encrypted signing secrets (agents/signing.py)
    heartbeat_seconds: int | None = None  # an async attempt with no callback this long times out
    budget: Budget | None = None  # daily limits (runs, runtime, cost), or None
    pause_after_failures: int | None = None  # consecutive DEAD runs that disable the schedule, or None

    def with_(self, **changes: Any) -> "Agent":
        return replace(self, **changes)


@dataclass(frozen=True)
class Session:
    agent_id: str
    session_id: str
    tenant_id: str
    status: SessionStatus
    trigger: Trigger
    priority: Priority
    scheduled_for: float
    queued_at: float
    max_attempts: int
    timeout_seconds: int
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: int | None = None
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    skip_reason: str | None = None
    next_attempt_at: float | None = None
    stage: str | None = None  # PENDING (waiting for a slot) | ADMITTED (sent) | None
    admitted_at: float | None = None
    # While it holds a slot (ADMITTED or RUNNING) the session is its own lease: ``slot`` names
    # the counter shard, ``run_lease_until`` when it must be claimed (ADMITTED) or finished
    # (RUNNING) by; past it the recovery sweep takes over.
    run_lease_until: float | None = None
    slot: str | None = None
    claim: str | None = None  # the token of the attempt that owns it (RUNNING)
    tx: str | None = None  # the token of the last transaction that wrote it ("was it me?")
    check_overlap: bool = False  # another run of the agent was active when this one was planned
    cancel_requested: bool = False
    failed_at: float | None = None
    in_dlq: bool = False
    redriven_from: str | None = None  # a REDRIVE run: the dead session it re-runs
    redriven_to: str | None = None  # a dead session that was redriven: the new run
    holds: tuple[str, ...] = ()  # the keyed concurrency counters it holds with its slot (given back with it)
    waiting_reason: str | None = None  # what a keyed limit held it back for, as admission last saw it
    waiting_for: str | None = None  # the pool, for a pool's limit
    # Callbacks: the SHA-256 of the current attempt's callback token (and of the previous
    # attempt's), and how the attempt ``end_attempt`` ended (``ended_by``; ``end_hash``: the
    # complete/fail call that ended it, so its repeat is recognised).
    callback_hash: str | None = None
    prev_callback_hash: str | None = None
    end_attempt: int | None = None
    ended_by: str | None = None
    end_hash: str | None = None
    is_async: bool = False  # the current attempt was accepted (202): it ends by callback or timeout
    heartbeat_seconds: int | None = None  # of the async attempt (the agent's, when it was accepted)
    last_heartbeat_at: float | None = None
    last_heartbeat_details: Any = None  # handed to the next attempt as lastHeartbeatDetails
    progress: dict[str, Any] | None = None  # the latest {percent, message, at} an agent reported
    progress_event_at: float | None = None  # when the last agent:progress event of a callback went out
    usage: dict[str, Any] | None = None  # what the agent reported it used
    rate_limited_waits: int = 0  # attempts that ended RATE_LIMITED and waited without using a retry

    def with_(self, **changes: Any) -> "Session":
        return replace(self, **changes)

    @property
    def eligible_at(self) -> float:
        return self.next_attempt_at if self.next_attempt_at is not None else self.scheduled_for


STAGE_PENDING = "PENDING"
STAGE_ADMITTED = "ADMITTED"
