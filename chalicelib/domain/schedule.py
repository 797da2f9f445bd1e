"""The schedule value type and the pure fire decisions of the tick.

``plan_fires`` decides, for one due schedule, which fire times become runs and
which are recorded as SKIPPED (and why), and where the schedule goes next.
It takes ``now``; it reads nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from chalicelib.domain.brakes import paused_at
from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.expressions import CronFires, ExcludedDates, FireTimes
from chalicelib.domain.ids import jitter_offset
from chalicelib.domain.model import CatchupPolicy, OverlapPolicy, Priority, SkipReason

MAX_CATCHUP_RUNS = 100  # CatchupPolicy.ALL runs at most this many missed fires per tick
MAX_SKIP_RECORDS = 100  # SKIPPED sessions written per schedule per tick (the ledger derives the rest)
MAX_FIRES_PER_TICK = 10_000  # hard bound on fires examined for one schedule in one tick
MAX_PERIODS = 20  # pause / disable periods remembered for "why did it not run?"

Period = tuple[float, "float | None"]  # (start, end): a pause or a disable; end None while it lasts


@dataclass(frozen=True)
class ScheduleSpec:
    cron_expression: str
    timezone: str = "UTC"
    priority: Priority = Priority.NORMAL
    enabled: bool = True
    catchup: CatchupPolicy = CatchupPolicy.LATEST
    catchup_window_seconds: int = 3600
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    start_at: float | None = None
    end_at: float | None = None
    jitter_seconds: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    disabled_periods: tuple[Period, ...] = ()
    anchor_at: float | None = None  # rate(): the instant its fires count from
    exclude_dates: tuple[str, ...] = ()  # local YYYY-MM-DD dates whose fires never run
    paused_until: float | None = None  # fires before it are SKIPPED (PAUSED); after it, it fires again
    disabled_reason: str | None = None  # the system disabled it (brakes.DisabledReason); None: a person did

    @property
    def expression(self) -> str:
        """The schedule's expression (cron, rate() or at()); stored as ``cronExpression``."""
        return self.cron_expression

    @property
    def excluded(self) -> ExcludedDates:
        return ExcludedDates.of(self.exclude_dates, self.timezone)

    def to_item(self) -> dict[str, Any]:
        return {
            "cronExpression": self.cron_expression,
            "timezone": self.timezone,
            "priority": self.priority.value,
            "enabled": self.enabled,
            "catchup": self.catchup.value,
            "catchupWindowSeconds": self.catchup_window_seconds,
            "overlapPolicy": self.overlap_policy.value,
            "startAt": self.start_at,
            "endAt": self.end_at,
            "jitterSeconds": self.jitter_seconds,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "disabledPeriods": [list(p) for p in self.disabled_periods],
            "anchorAt": self.anchor_at,
            "excludeDates": list(self.exclude_dates),
            "pausedUntil": self.paused_until,
            "disabledReason": self.disabled_reason,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "ScheduleSpec":
        return cls(
            cron_expression=item["cronExpression"],
            timezone=item.get("timezone", "UTC"),
            priority=Priority(item.get("priority", "NORMAL")),
            enabled=bool(item.get("enabled", True)),
            catchup=CatchupPolicy(item.get("catchup", "LATEST")),
            catchup_window_seconds=int(item.get("catchupWindowSeconds", 3600)),
            overlap_policy=OverlapPolicy(item.get("overlapPolicy", "SKIP")),
            start_at=item.get("startAt"),
            end_at=item.get("endAt"),
            jitter_seconds=int(item.get("jitterSeconds", 0)),
            created_at=float(item.get("createdAt", 0)),
            updated_at=float(item.get("updatedAt", 0)),
            disabled_periods=tuple(
                (float(p[0]), None if p[1] is None else float(p[1]))
                for p in item.get("disabledPeriods", [])
            ),
            anchor_at=None if item.get("anchorAt") is None else float(item["anchorAt"]),
            exclude_dates=tuple(item.get("excludeDates") or ()),
            paused_until=None if item.get("pausedUntil") is None else float(item["pausedUntil"]),
            disabled_reason=item.get("disabledReason"),
        )


def in_periods(t: float, periods: Iterable[Period]) -> bool:
    return any(start <= t and (end is None or t < end) for start, end in periods)


def add_period_start(periods: Iterable[Sequence[Any]], at: float) -> tuple[Period, ...]:
    out: tuple[Period, ...] = tuple((p[0], p[1]) for p in periods)
    if out and out[-1][1] is None:
        return out  # already open
    return (out + ((at, None),))[-MAX_PERIODS:]


def close_period(periods: Iterable[Sequence[Any]], at: float) -> tuple[Period, ...]:
    out: list[Period] = [(p[0], p[1]) for p in periods]
    if out and out[-1][1] is None:
        out[-1] = (out[-1][0], at)
    return tuple(out)


@dataclass(frozen=True)
class PlannedRun:
    fire_at: float  # the cron fire time (epoch s, UTC)
    scheduled_for: float  # fire time plus deterministic jitter


@dataclass(frozen=True)
class PlannedSkip:
    fire_at: float
    reason: SkipReason


@dataclass(frozen=True)
class FirePlan:
    runs: tuple[PlannedRun, ...]
    skips: tuple[PlannedSkip, ...]
    skipped_total: int  # may exceed len(skips): only MAX_SKIP_RECORDS are recorded
    next_run_at: float | None  # None: the schedule has ended (past endAt)
    next_due_at: float | None


def skip_reason_for(
    fire: float, spec: ScheduleSpec, paused_periods: Sequence[Period]
) -> SkipReason:
    """Why a fire was not run: the most specific cause we know of."""
    if spec.exclude_dates and spec.excluded.excludes(fire):
        return SkipReason.EXCLUDED_DATE
    if in_periods(fire, paused_periods):
        return SkipReason.PAUSED
    if in_periods(fire, spec.disabled_periods):
        return SkipReason.DISABLED
    return SkipReason.CATCHUP_WINDOW


def as_fire_times(fires: FireTimes | CronSchedule) -> FireTimes:
    return CronFires(fires) if isinstance(fires, CronSchedule) else fires


def plan_fires(
    *,
    agent_id: str,
    spec: ScheduleSpec,
    cron: FireTimes | CronSchedule,  # the schedule's fire times (chalicelib.domain.expressions)
    next_run_at: float,
    active_runs: int,
    now: float,
    lookahead: float,
    late_tolerance: float,
    paused_periods: Sequence[Period] = (),
) -> FirePlan:
    """Decide the fires of one schedule from ``next_run_at`` up to ``now + lookahead``.

    Every judgement is made on a fire's *scheduled* time (the fire time plus its
    deterministic jitter), the time its run is meant to start:

    - a fire whose scheduled time is later than ``now - late_tolerance`` is on time
      (or slightly late): it runs;
    - older fires were *missed* (pause, disable, outage): the catch-up policy picks
      which of them run (the window counts from the scheduled time); the others are
      SKIPPED with the reason;
    - fires before ``startAt`` or after ``endAt`` are skipped as OUTSIDE_WINDOW, fires
      on an excluded date as EXCLUDED_DATE, fires before ``pausedUntil`` as PAUSED;
    - the overlap policy then applies against the agent's active runs for fires already
      due; for fires ahead of ``now`` the worker applies it when the run starts.

    An expression that stops firing (``at()`` after its one fire) ends the schedule
    like ``endAt`` does: ``next_run_at`` None.
    """
    fires_source = as_fire_times(cron)
    horizon = now + lookahead
    fires: list[tuple[float, float]] = []  # (fire, scheduled)
    t: float | None = next_run_at
    ended = False
    it = None
    jumped: float | None = None
    jitter = max(0, spec.jitter_seconds)

    def sched_of(f: float) -> float:
        return f + jitter_offset(agent_id, f, spec.jitter_seconds)

    floor = now - max(spec.catchup_window_seconds, late_tolerance) - jitter - 1
    if t < floor:  # type: ignore[operator]  # t is a float until the jump below
        # A long outage: fires older than the catch-up window can never run, so
        # jump over them instead of enumerating them; the first one is recorded.
        jumped = t
        nxt = fires_source.next_after(datetime.fromtimestamp(floor, tz=timezone.utc))
        t = None if nxt is None else nxt.timestamp()
    while True:
        if t is None or (spec.end_at is not None and t > spec.end_at):
            ended = True
            break
        sched = sched_of(t)
        if sched > horizon or len(fires) >= MAX_FIRES_PER_TICK:
            break
        fires.append((t, sched))
        if it is None:
            it = fires_source.iter_after(datetime.fromtimestamp(t, tz=timezone.utc))
        nxt = next(it, None)
        t = None if nxt is None else nxt.timestamp()

    runs: list[PlannedRun] = []
    skips: list[PlannedSkip] = []
    skipped_total = 0

    def skip(fire: float, reason: SkipReason) -> None:
        nonlocal skipped_total
        skipped_total += 1
        skips.append(PlannedSkip(fire, reason))

    if jumped is not None and (spec.end_at is None or jumped <= spec.end_at):
        skip(jumped, skip_reason_for(jumped, spec, paused_periods))

    excluded = spec.excluded
    candidates: list[tuple[float, float]] = []
    missed: list[tuple[float, float]] = []
    for f, sched in fires:
        if spec.start_at is not None and f < spec.start_at:
            skip(f, SkipReason.OUTSIDE_WINDOW)
        elif excluded and excluded.excludes(f):
            skip(f, SkipReason.EXCLUDED_DATE)
        elif paused_at(f, spec.paused_until):
            skip(f, SkipReason.PAUSED)
        elif sched < now - late_tolerance or in_periods(f, paused_periods) or in_periods(f, spec.disabled_periods):
            missed.append((f, sched))  # a fire inside a pause or a disabled period was missed, however recent
        else:
            candidates.append((f, sched))

    chosen_missed: list[tuple[float, float]] = []
    if missed:
        if spec.catchup is CatchupPolicy.LATEST:
            latest = missed[-1]
            # A fire already due on time in this same plan supersedes the catch-up run:
            # run once, not twice (and not the older one in place of the on-time one).
            if now - latest[1] <= spec.catchup_window_seconds and not any(c[1] <= now for c in candidates):
                chosen_missed = [latest]
        elif spec.catchup is CatchupPolicy.ALL:
            chosen_missed = [m for m in missed if now - m[1] <= spec.catchup_window_seconds][
                -MAX_CATCHUP_RUNS:
            ]
        chosen = {f for f, _ in chosen_missed}
        for f, _ in missed:
            if f not in chosen:
                skip(f, skip_reason_for(f, spec, paused_periods))

    active = active_runs
    limit = {OverlapPolicy.SKIP: 1, OverlapPolicy.QUEUE_ONE: 2, OverlapPolicy.ALLOW: None,
             OverlapPolicy.CANCEL_PREVIOUS: None}[
        spec.overlap_policy
    ]
    for f, sched in chosen_missed + candidates:
        # Only a fire that is already due can be judged against the runs active now; a
        # fire planned ahead (up to the lookahead) is judged by the worker when it starts,
        # since the run active now may well be over by then.
        if limit is not None and active >= limit and sched <= now:
            skip(f, SkipReason.OVERLAP)
            continue
        active += 1
        runs.append(PlannedRun(f, sched))

    skips.sort(key=lambda s: s.fire_at)
    recorded = tuple(skips[-MAX_SKIP_RECORDS:])
    if ended:
        return FirePlan(tuple(runs), recorded, skipped_total, None, None)
    return FirePlan(tuple(runs), recorded, skipped_total, t, sched_of(t))  # type: ignore[arg-type]
