"""Schedule history: what changed, how it is named, and the event that says so. Pure.

Every change of an agent's schedule (by any route) becomes one numbered version:
``version`` counts from 1 per agent, ``action`` names the change, ``schedule`` is
the full schedule after it (before it, for DELETED).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.events import envelope
from chalicelib.domain.schedule import ScheduleSpec

SCHEDULE_CHANGED = "schedule:changed"
SYSTEM = "system"  # changedBy of changes the scheduler makes by itself


class HistoryAction(str, enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class HistoryEntry:
    agent_id: str
    tenant_id: str
    version: int
    changed_at: float
    changed_by: str
    action: HistoryAction
    schedule: dict[str, Any]  # the schedule as answers show it


def _without_bookkeeping(spec: ScheduleSpec) -> ScheduleSpec:
    return ScheduleSpec(**{**spec.__dict__, "updated_at": 0.0, "disabled_periods": (), "enabled": True,
                           "disabled_reason": None})


def change_action(before: ScheduleSpec | None, after: ScheduleSpec | None, *, saved: bool = False) -> HistoryAction | None:
    """The action of a write that turns ``before`` into ``after``; None: the schedule did not change.

    ``saved``: the schedule was written on purpose (a create or replace), which is a
    version even when nothing in it differs.
    """
    if before is None and after is None:
        return None
    if before is None:
        return HistoryAction.CREATED
    if after is None:
        return HistoryAction.DELETED
    if not saved and before == after:
        return None
    if before.enabled != after.enabled and _without_bookkeeping(before) == _without_bookkeeping(after):
        return HistoryAction.ENABLED if after.enabled else HistoryAction.DISABLED
    return HistoryAction.UPDATED


def schedule_changed(agent_id: str, version: int, action: HistoryAction, changed_by: str, now: float) -> dict[str, Any]:
    """The ``schedule:changed`` event."""
    return envelope(
        SCHEDULE_CHANGED,
        {"agentId": agent_id, "version": version, "action": action.value, "changedBy": changed_by},
        now,
    )
