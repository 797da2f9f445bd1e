"""The bench's data: a deterministic mix of schedules, shared by every figure.

The mix is what a real tenant base might look like: a few every-minute jobs,
many hourly/half-hourly hashed (``H``) jobs, daily jobs in several zones, a
top-of-the-hour peak. Every value is derived from the schedule's index, so the
project and the baseline see the same data, run after run.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone

from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.ids import jitter_offset, stable_bucket
from chalicelib.domain.model import OverlapPolicy, Priority
from chalicelib.domain.schedule import ScheduleSpec

# (expression, zone, share of the 10,000): ~315,000 fires in a day, a top-of-the-hour peak.
MIX: tuple[tuple[str, str, int], ...] = (
    ("* * * * *", "UTC", 100),
    ("H/15 * * * *", "UTC", 500),
    ("H/30 * * * *", "UTC", 1000),
    ("H * * * *", "UTC", 2500),
    ("0 * * * *", "UTC", 300),
    ("H H * * *", "UTC", 2600),
    ("0 9 * * MON-FRI", "America/New_York", 150),
    ("H 9 * * MON-FRI", "America/New_York", 850),
    ("30 8 * * *", "Europe/Berlin", 300),
    ("H(0-29) 8 * * *", "Europe/Berlin", 700),
    ("H 2 * * *", "Asia/Tokyo", 500),
    ("15 */6 * * *", "UTC", 500),
)
MIX_TOTAL = sum(n for _, _, n in MIX)
# CRITICAL 5 %, HIGH 15 %, NORMAL 60 %, LOW 20 %
PRIORITY_WEIGHTS = ((Priority.CRITICAL, 5), (Priority.HIGH, 15), (Priority.NORMAL, 60), (Priority.LOW, 20))
JITTER_SHARE = 0.2  # a fifth of the schedules spread their fires by up to JITTER_MAX seconds
JITTER_MAX = 30
TENANTS = 20
TIMEOUT_SECONDS = 300

# Standard expressions (no H), for comparing cron libraries on the same input.
CRON_LIBRARY_CASES: tuple[str, ...] = (
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "15 */6 * * *",
    "30 8 * * *",
    "0 9 * * MON-FRI",
    "5 4 * * SUN",
    "0 0 1 * *",
)
CRON_LIBRARY_ZONES: tuple[str, ...] = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Tokyo")


@dataclass(frozen=True)
class Sched:
    index: int
    tenant_id: str
    agent_id: str
    spec: ScheduleSpec
    cron: CronSchedule

    @property
    def priority(self) -> Priority:
        return self.spec.priority


def _mix_slot(i: int, n: int) -> tuple[str, str]:
    """Spread the mix proportionally over ``n`` schedules (works for tiny n too)."""
    pos = (i * MIX_TOTAL) // max(n, 1)
    for expr, zone, share in MIX:
        if pos < share:
            return expr, zone
        pos -= share
    return MIX[-1][0], MIX[-1][1]


def _priority(i: int) -> Priority:
    b = stable_bucket(f"prio-{i}", 100)
    for p, w in PRIORITY_WEIGHTS:
        if b < w:
            return p
        b -= w
    return Priority.LOW


def schedules(n: int, *, jitter: bool = True, overlap: OverlapPolicy = OverlapPolicy.ALLOW,
              created_at: float = 0.0) -> list[Sched]:
    """``n`` schedules of the mix, in a deterministic order."""
    out = []
    for i in range(n):
        expr, zone = _mix_slot(i, n)
        aid = f"ag_bench{i:05d}"
        j = JITTER_MAX if jitter and stable_bucket(f"jit-{i}", 100) < JITTER_SHARE * 100 else 0
        spec = ScheduleSpec(
            cron_expression=expr,
            timezone=zone,
            priority=_priority(i),
            overlap_policy=overlap,
            jitter_seconds=j,
            created_at=created_at,
            updated_at=created_at,
        )
        out.append(Sched(i, f"tenant{i % TENANTS:02d}", aid, spec, CronSchedule.parse(expr, zone, hash_id=aid)))
    return out


def day_fires(s: Sched, start: float, end: float) -> list[tuple[float, float]]:
    """(fire time, scheduled time = fire + jitter) of ``s`` in (start, end]."""
    out = []
    for t in s.cron.iter_after(datetime.fromtimestamp(start, tz=timezone.utc)):
        f = t.timestamp()
        if f > end:
            break
        out.append((f, f + jitter_offset(s.agent_id, f, s.spec.jitter_seconds)))
    return out


def run_duration(agent_id: str, fire: float, median: float, sigma: float, cap: float) -> float:
    """A run's duration (s): lognormal, deterministic per (agent, fire)."""
    rng = random.Random(f"{agent_id}|{fire}")
    return min(cap, rng.lognormvariate(0.0, sigma) * median)
