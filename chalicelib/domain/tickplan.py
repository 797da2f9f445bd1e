"""What the tick decided for one due schedule, as plain values (the adapter writes them). Pure."""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.records import Session

MAX_ITEMS_PER_SCHEDULE = 90  # sessions one schedule may write in one tick: always one transaction


@dataclass(frozen=True)
class AdvanceSchedule:
    """Move the schedule past what this tick planned, if nobody moved it first."""

    tenant_id: str
    agent_id: str
    expect_next_run_at: float | None
    next_run_at: float | None  # None: past its end, the schedule leaves the due index
    next_due_at: float | None
    add_active: int  # runs created (they count as the agent's active runs)


@dataclass(frozen=True)
class SchedulePlan:
    advance: AdvanceSchedule
    sessions: tuple[Session, ...]  # runs (QUEUED, waiting for a slot) and SKIPPED records

    @property
    def key(self) -> str:
        return self.advance.agent_id

    def __len__(self) -> int:
        return 1 + len(self.sessions)
