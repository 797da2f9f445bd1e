"""Schedule conflicts over a time window. Pure: no AWS, no Chalice; ``start``/``end`` are passed in.

Given a tenant's enabled schedules and each agent's *expected run time* (the p95
of its recent successful runs, or its timeout when it has no history),
:func:`find_conflicts` reports three kinds of trouble ahead:

``SELF_OVERLAP``
    consecutive fires of one agent closer together than its expected run time:
    with ``overlapPolicy`` SKIP some fires are skipped, with QUEUE_ONE runs queue
    up, with ALLOW they run on top of each other.
``CAPACITY``
    moments where more runs are expected than ``SCHEDULER_MAX_CONCURRENT_AGENTS``
    allows. The fleet is *simulated* with the scheduler's own rules (admission by
    priority, then fire time; the overlap policy per agent), so the conflict
    names the agents holding or waiting for slots and how long the waiting
    (lowest-priority) ones would wait.
``HOT_MINUTE``
    ``hot_threshold`` or more schedules starting in the same minute (the
    thundering herd at :00). It comes with a concrete suggestion, an ``H`` form
    of an expression or a minute offset, that is *verified*: the suggested
    expressions' fires are recomputed over the window and must not form a hot
    minute with anything else.

A conflict that repeats (the same agents every hour) is reported once, with its
first time ``at``, ``occurrences`` and ``last_at``. Fires are examined in fire
order up to ``max_fires`` across the fleet; past that the analysis stops early
and says so (``analyzed_until``).
"""
from __future__ import annotations

import binascii
import bisect
import enum
import heapq
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence
from zoneinfo import ZoneInfo

from chalicelib.domain.cron import ALIASES, CronError, CronSchedule
from chalicelib.domain.expressions import CronFires, ExcludedDates, FireTimes, fire_times_for
from chalicelib.domain.ids import jitter_offset
from chalicelib.domain.model import OverlapPolicy, Priority
from chalicelib.domain.schedule import ScheduleSpec

DEFAULT_WINDOW_HOURS = 24
MAX_WINDOW_HOURS = 168
HISTORY_RUNS = 20  # recent runs read per agent for its expected run time
MIN_HOT_THRESHOLD = 3
MAX_FIRES = 100_000  # fires examined across the fleet in one analysis (about a second)
MAX_CONFLICTS = 100  # conflicts returned (after collapsing repeats)
MAX_LEAD_SECONDS = 6 * 3600  # runs started this long before the window still count
MAX_PLACEMENT_TRIES = 400  # candidate expressions checked for HOT_MINUTE suggestions, per analysis

_OVERLAP_LIMIT = {OverlapPolicy.SKIP: 1, OverlapPolicy.QUEUE_ONE: 2, OverlapPolicy.ALLOW: None,
                  OverlapPolicy.CANCEL_PREVIOUS: None}
_TYPE_ORDER = {"SELF_OVERLAP": 0, "CAPACITY": 1, "HOT_MINUTE": 2}
_DIVISORS_60 = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
_DIVISORS_24 = (1, 2, 3, 4, 6, 8, 12)


class ConflictType(str, enum.Enum):
    SELF_OVERLAP = "SELF_OVERLAP"
    CAPACITY = "CAPACITY"
    HOT_MINUTE = "HOT_MINUTE"


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class FleetSchedule:
    """One enabled schedule as the analysis sees it."""

    agent_id: str
    cron: FireTimes  # cron, rate() or at() (a CronSchedule is accepted and wrapped)
    expected_seconds: float
    priority: Priority = Priority.NORMAL
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    start_at: float | None = None
    end_at: float | None = None
    jitter_seconds: int = 0
    from_history: bool = False  # expected_seconds is the p95 of recent runs (else the timeout)
    label: str | None = None  # a human name for messages (the agent's name)
    exclude_dates: tuple[str, ...] = ()  # local dates whose fires never run

    def __post_init__(self) -> None:
        if isinstance(self.cron, CronSchedule):
            object.__setattr__(self, "cron", CronFires(self.cron))

    @property
    def excluded(self) -> ExcludedDates:
        return ExcludedDates.of(self.exclude_dates, self.cron.timezone)

    @classmethod
    def from_spec(
        cls,
        agent_id: str,
        spec: ScheduleSpec,
        expected_seconds: float,
        *,
        from_history: bool = False,
        label: str | None = None,
        cron: FireTimes | CronSchedule | None = None,
    ) -> "FleetSchedule":
        """Raises :class:`CronError` if the stored expression no longer parses."""
        return cls(
            agent_id=agent_id,
            cron=cron or fire_times_for(spec, agent_id),  # type: ignore[arg-type]  # a CronSchedule is a FireTimes by shape
            expected_seconds=expected_seconds,
            priority=spec.priority,
            overlap_policy=spec.overlap_policy,
            start_at=spec.start_at,
            end_at=spec.end_at,
            jitter_seconds=spec.jitter_seconds,
            from_history=from_history,
            label=label,
            exclude_dates=spec.exclude_dates,
        )

    @property
    def name(self) -> str:
        return self.label or self.agent_id


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile; ``values`` must not be empty."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)])


def expected_run_seconds(durations_ms: Sequence[int | float], timeout_seconds: float) -> tuple[float, bool]:
    """(seconds, from_history): the p95 of successful runs' durations, else the timeout."""
    values = [float(d) for d in durations_ms if d is not None and d >= 0]
    if not values:
        return float(timeout_seconds), False
    return p95(values) / 1000.0, True


# ------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class ScheduleChange:
    agent_id: str
    timezone: str
    cron_expression: str  # the current expression
    suggested: str  # the expression that removes the conflict


@dataclass(frozen=True)
class Suggestion:
    text: str
    changes: tuple[ScheduleChange, ...] = ()


@dataclass(frozen=True)
class Wait:
    agent_id: str
    priority: Priority
    seconds: float  # the longest wait of this agent's runs over the occurrences


@dataclass(frozen=True)
class Conflict:
    type: ConflictType
    at: float  # first occurrence (epoch s)
    agent_ids: tuple[str, ...]
    message: str
    suggestion: Suggestion | None = None
    occurrences: int = 1
    last_at: float | None = None
    zone: str = "UTC"  # the zone to show ``at`` in: the agents' zone when they share one
    waits: tuple[Wait, ...] = ()  # CAPACITY: who waits, and how long


@dataclass(frozen=True)
class ConflictReport:
    start: float
    end: float
    analyzed_until: float  # == end unless the fleet had more than ``max_fires`` fires
    cap: int
    hot_threshold: int
    conflicts: tuple[Conflict, ...]
    truncated: bool  # conflicts were cut at MAX_CONFLICTS, or the window at analyzed_until


def hot_threshold_for(cap: int) -> int:
    return max(MIN_HOT_THRESHOLD, cap)


# ------------------------------------------------------------------ analysis


def find_conflicts(
    fleet: Sequence[FleetSchedule],
    *,
    start: float,
    end: float,
    cap: int,
    hot_threshold: int | None = None,
    max_fires: int = MAX_FIRES,
    max_conflicts: int = MAX_CONFLICTS,
) -> ConflictReport:
    """Conflicts among ``fleet`` for fires in ``[start, end)``, ``cap`` runs at once."""
    if end <= start:
        raise ValueError("end must be after start")
    if cap < 1:
        raise ValueError("cap must be at least 1")
    threshold = hot_threshold if hot_threshold is not None else hot_threshold_for(cap)
    fleet = list(fleet)
    lead = min(MAX_LEAD_SECONDS, max((e.expected_seconds + e.jitter_seconds for e in fleet), default=0.0))

    # Fires of every schedule, merged in fire order, up to the budget.
    fires: list[tuple[float, float, int]] = []  # (fire, scheduled start, index)
    analyzed_until = end
    cache: dict[tuple[Any, ...], list[float]] = {}  # schedules with the same expression share their fire times
    merged = heapq.merge(*(
        _fires(e, i, start - lead, end, _cron_fires(e.cron, _low(e, start - lead), end, max_fires + 1, cache))
        for i, e in enumerate(fleet)
    ))
    for item in merged:
        if len(fires) >= max_fires:
            analyzed_until = item[0]
            fires = [f for f in fires if f[0] < analyzed_until]
            break
        fires.append(item)

    by_agent: list[list[float]] = [[] for _ in fleet]
    for _, sched, i in fires:
        by_agent[i].append(sched)
    for lst in by_agent:
        lst.sort()

    sim = _simulate(fleet, fires, cap, start)
    conflicts: list[Conflict] = []
    conflicts += _self_overlaps(fleet, by_agent, sim.skipped, start, analyzed_until)
    conflicts += _capacity(fleet, sim.episodes, cap, start)
    conflicts += _hot_minutes(fleet, fires, threshold, start, analyzed_until, [MAX_PLACEMENT_TRIES])
    conflicts.sort(key=lambda c: (c.at, _TYPE_ORDER[c.type.value], c.agent_ids))
    truncated = analyzed_until < end or len(conflicts) > max_conflicts
    return ConflictReport(
        start, end, analyzed_until, cap, threshold, tuple(conflicts[:max_conflicts]), truncated
    )


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def _low(e: FleetSchedule, start: float) -> float:
    return start if e.start_at is None else max(start, e.start_at)


def _cron_fires(cron: FireTimes, start: float, end: float, limit: int,
                cache: dict[tuple[Any, ...], list[float]]) -> list[float]:
    """Fire times in [start, end), at most ``limit``, computed once per distinct expression."""
    key = cron.key + (start,)
    got = cache.get(key)
    if got is None:
        got = []
        for t in cron.iter_after(_dt(start - 0.001)):
            f = t.timestamp()
            if f >= end or len(got) >= limit:
                break
            got.append(f)
        cache[key] = got
    return got


def _fires(e: FleetSchedule, index: int, start: float, end: float,
           times: Sequence[float] | None = None) -> Iterator[tuple[float, float, int]]:
    """(fire, scheduled start, index) for fires in [start, end) inside the schedule's startAt/endAt.

    ``times``: the cron's fire times from ``start`` (or startAt) on, if already known.
    """
    lo = _low(e, start)
    if lo >= end:
        return
    source: Iterator[float]
    if times is None:
        source = (t.timestamp() for t in e.cron.iter_after(_dt(lo - 0.001)))
    else:
        source = iter(times[bisect.bisect_left(times, lo):])
    excluded = e.excluded
    for f in source:
        if f >= end or (e.end_at is not None and f > e.end_at):
            return
        if excluded and excluded.excludes(f):
            continue  # an excluded date's fires never run
        yield f, f + jitter_offset(e.agent_id, f, e.jitter_seconds), index


# --- the fleet simulation (capacity, and overlap skips) -------------------------------


@dataclass
class _Episode:
    """From the first run that has to wait for a slot until nobody waits any more."""

    start: float
    involved: set[int]
    waits: dict[int, float] = field(default_factory=dict)
    waited_runs: int = 0


@dataclass
class _Simulation:
    skipped: list[int]  # fires skipped by the overlap policy, per agent (inside the window)
    episodes: list[_Episode]


def _simulate(fleet: Sequence[FleetSchedule], fires: list[tuple[float, float, int]], cap: int,
              window_start: float) -> _Simulation:
    """Run the fleet through admission: priority, then fire time; at most ``cap`` at once."""
    events = sorted(fires, key=lambda f: (f[1], fleet[f[2]].priority.rank, fleet[f[2]].agent_id, f[0]))
    active = [0] * len(fleet)  # runs queued or running, per agent (what the overlap policy counts)
    skipped = [0] * len(fleet)
    running: list[tuple[float, int]] = []  # (expected end, index)
    waiting: list[tuple[int, float, str, float, int]] = []  # (rank, eligible, agent id, fire, index)
    episodes: list[_Episode] = []
    ep: _Episode | None = None

    def start_run(t: float, i: int) -> None:
        heapq.heappush(running, (t + max(0.0, fleet[i].expected_seconds), i))
        if ep is not None:
            ep.involved.add(i)

    def release_until(t: float) -> None:
        nonlocal ep
        while running and running[0][0] <= t:
            end_t, i = heapq.heappop(running)
            active[i] -= 1
            if waiting:
                _, eligible, _, _, w = heapq.heappop(waiting)
                assert ep is not None
                ep.waits[w] = max(ep.waits.get(w, 0.0), end_t - eligible)
                ep.waited_runs += 1
                start_run(end_t, w)
                if not waiting:
                    episodes.append(ep)
                    ep = None

    for fire, sched, i in events:
        release_until(sched)
        limit = _OVERLAP_LIMIT[fleet[i].overlap_policy]
        if limit is not None and active[i] >= limit:
            if sched >= window_start:
                skipped[i] += 1
            continue
        active[i] += 1
        if len(running) < cap and not waiting:
            start_run(sched, i)
            continue
        if ep is None:
            ep = _Episode(start=sched, involved={r[1] for r in running})
        ep.involved.add(i)
        heapq.heappush(waiting, (fleet[i].priority.rank, sched, fleet[i].agent_id, fire, i))
    release_until(math.inf)
    return _Simulation(skipped, episodes)


# --- SELF_OVERLAP ---------------------------------------------------------------------


def _self_overlaps(
    fleet: Sequence[FleetSchedule], by_agent: list[list[float]], skipped: list[int], start: float, end: float
) -> list[Conflict]:
    out: list[Conflict] = []
    for i, e in enumerate(fleet):
        times = by_agent[i]
        if len(times) < 2 or e.expected_seconds <= 0:
            continue
        hits = [(b, b - a) for a, b in zip(times, times[1:]) if b - a < e.expected_seconds and b >= start]
        if not hits:
            continue
        in_window = sum(1 for t in times if t >= start)
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        median_gap = gaps[len(gaps) // 2]
        min_gap = min(g for _, g in hits)
        source = "p95 of recent runs" if e.from_history else "its timeout, no run history yet"
        head = (f"{e.name} fires as little as {_fmt_dur(min_gap)} apart but a run takes about "
                f"{_fmt_dur(e.expected_seconds)} ({source})")
        policy = e.overlap_policy
        if policy is OverlapPolicy.SKIP:
            tail = f"with overlapPolicy SKIP {skipped[i]} of {in_window} fires would be skipped"
        elif policy is OverlapPolicy.QUEUE_ONE:
            tail = f"with overlapPolicy QUEUE_ONE runs queue behind each other and {skipped[i]} of {in_window} fires would be skipped"
        elif policy is OverlapPolicy.CANCEL_PREVIOUS:
            tail = f"with overlapPolicy CANCEL_PREVIOUS each fire would cancel the run before it ({len(hits)} time(s))"
        else:
            tail = f"with overlapPolicy ALLOW up to {_max_concurrent(times, e.expected_seconds)} runs would overlap"
        if len(hits) < len(times) - 1 and median_gap >= e.expected_seconds:
            tail += f" ({len(hits)} time(s) in the window, e.g. around a DST change)"
        out.append(Conflict(
            type=ConflictType.SELF_OVERLAP,
            at=hits[0][0],
            agent_ids=(e.agent_id,),
            message=f"{head}; {tail}",
            suggestion=_spacing_suggestion(e, median_gap, start, end),
            occurrences=len(hits),
            last_at=hits[-1][0],
            zone=e.cron.timezone,
        ))
    return out


def _max_concurrent(times: list[float], length: float) -> int:
    best, j = 0, 0
    for k, t in enumerate(times):
        while times[j] + length <= t:
            j += 1
        best = max(best, k - j + 1)
    return best


def _spacing_suggestion(e: FleetSchedule, median_gap: float, start: float, end: float) -> Suggestion | None:
    """An expression whose fires are at least the expected run time apart (checked), if one is simple."""
    if median_gap >= e.expected_seconds:
        return None  # it overlaps only now and then (DST): not worth a different schedule
    minutes = e.expected_seconds / 60.0
    text = f"fire {e.name} at most every {_fmt_dur(e.expected_seconds)} or make its runs shorter"
    if not isinstance(e.cron, CronFires):
        return Suggestion(text)  # rate() and at(): the fix is a longer rate, no cron rewrite
    fields = _fields(e.cron.expression)
    candidate = None
    if minutes < 60:
        step = next(d for d in _DIVISORS_60 if d >= minutes)
        candidate = " ".join(["H" if step == 60 else f"H/{step}"] + fields[1:])
    elif minutes / 60.0 <= 12 and fields[1].startswith("*"):
        step = next(d for d in _DIVISORS_24 if d >= minutes / 60.0)
        candidate = " ".join(["H", "H" if step == 24 else f"H/{step}"] + fields[2:])
    if candidate is None:
        return Suggestion(text)
    cron = _try_parse(candidate, e)
    if cron is None:
        return Suggestion(text)
    times = [s for _, s, _ in _fires(_with_cron(e, cron), 0, start, end)]
    if any(b - a < e.expected_seconds for a, b in zip(times, times[1:])):
        return Suggestion(text)
    return Suggestion(
        f"{text}, e.g. '{candidate}'",
        (ScheduleChange(e.agent_id, e.cron.timezone, e.cron.expression, candidate),),
    )


# --- CAPACITY -------------------------------------------------------------------------


def _capacity(fleet: Sequence[FleetSchedule], episodes: list[_Episode], cap: int, start: float) -> list[Conflict]:
    groups: dict[tuple[frozenset[int], frozenset[int]], list[_Episode]] = {}
    for ep in episodes:
        if ep.start < start or not ep.waits:
            continue
        groups.setdefault((frozenset(ep.involved), frozenset(ep.waits)), []).append(ep)
    out: list[Conflict] = []
    for (involved, _), eps in groups.items():
        waits: dict[int, float] = {}
        for ep in eps:
            for i, w in ep.waits.items():
                waits[i] = max(waits.get(i, 0.0), w)
        order = sorted(waits, key=lambda i: (-waits[i], fleet[i].agent_id))
        wait_list = tuple(Wait(fleet[i].agent_id, fleet[i].priority, waits[i]) for i in order)
        who = ", ".join(f"{fleet[i].name} ({fleet[i].priority.value}) up to {_fmt_dur(waits[i])}" for i in order[:5])
        if len(order) > 5:
            who += f" and {len(order) - 5} more"
        zone = _common_zone(fleet, involved)
        times = f", {len(eps)} times in the window" if len(eps) > 1 else ""
        message = (f"{len(involved)} agents' runs overlap at {_fmt_time(eps[0].start, zone)} beyond the cap of "
                   f"{cap} concurrent runs{times}; waiting for a slot: {who}")
        out.append(Conflict(
            type=ConflictType.CAPACITY,
            at=eps[0].start,
            agent_ids=tuple(sorted(fleet[i].agent_id for i in involved)),
            message=message,
            suggestion=Suggestion(
                "spread these schedules over the hour (an H minute), shorten the runs, "
                "or raise SCHEDULER_MAX_CONCURRENT_AGENTS"
            ),
            occurrences=len(eps),
            last_at=eps[-1].start,
            zone=zone,
            waits=wait_list,
        ))
    return out


# --- HOT_MINUTE -----------------------------------------------------------------------


def _minute(t: float) -> int:
    return int(t // 60) * 60


def _hot_minutes(
    fleet: Sequence[FleetSchedule], fires: list[tuple[float, float, int]], threshold: int, start: float, end: float,
    budget: list[int],
) -> list[Conflict]:
    buckets: dict[int, set[int]] = {}
    for _, sched, i in fires:
        if start <= sched < end:
            buckets.setdefault(_minute(sched), set()).add(i)
    groups: dict[frozenset[int], list[int]] = {}
    for m in sorted(buckets):
        if len(buckets[m]) >= threshold:
            groups.setdefault(frozenset(buckets[m]), []).append(m)
    if not groups:
        return []
    load = {m: len(s) for m, s in buckets.items()}
    minutes_of: dict[int, set[int]] = {}
    for m, s in buckets.items():
        for i in s:
            minutes_of.setdefault(i, set()).add(m)
    out: list[Conflict] = []
    for members, minutes in groups.items():
        zone = _common_zone(fleet, members)
        names = ", ".join(fleet[i].name for i in sorted(members, key=lambda i: fleet[i].agent_id)[:6])
        if len(members) > 6:
            names += f" and {len(members) - 6} more"
        times = f", {len(minutes)} times in the window" if len(minutes) > 1 else ""
        message = (f"{len(members)} schedules start in the same minute at {_fmt_time(minutes[0], zone)}"
                   f"{times}: {names}")
        out.append(Conflict(
            type=ConflictType.HOT_MINUTE,
            at=float(minutes[0]),
            agent_ids=tuple(sorted(fleet[i].agent_id for i in members)),
            message=message,
            suggestion=_stagger(fleet, members, threshold, load, minutes_of, start, end, budget),
            occurrences=len(minutes),
            last_at=float(minutes[-1]),
            zone=zone,
        ))
    return out


def _stagger(
    fleet: Sequence[FleetSchedule], members: frozenset[int], threshold: int, load: dict[int, int],
    minutes_of: dict[int, set[int]], start: float, end: float, budget: list[int],
) -> Suggestion | None:
    """Move the fewest (lowest-priority first) agents so that no minute holds ``threshold``.

    Each move is checked by recomputing the agent's fires over the window with the
    new expression: none of its new minutes may reach the threshold with whatever
    else fires then (moves already chosen included). Only the minute field
    changes, so the members still share the colliding hour: when their fires in
    that hour cannot fit ``threshold - 1`` a minute, there is no such move. The
    search is bounded by ``budget[0]`` candidate expressions (shared by the report).
    """
    need = len(members) - threshold + 1
    if sum(len(_minute_set(fleet[i].cron)) for i in members) > 60 * (threshold - 1):
        return None
    load = dict(load)
    changes: list[ScheduleChange] = []
    order = sorted(members, key=lambda i: (-fleet[i].priority.rank, fleet[i].agent_id))
    for i in order:
        if len(changes) >= need:
            break
        e = fleet[i]
        old = minutes_of.get(i, set())
        for m in old:
            load[m] -= 1
        placed = None
        for expr in _alternatives(e):
            if budget[0] <= 0:
                break
            budget[0] -= 1
            cron = _try_parse(expr, e)
            new = None if cron is None else _placement(_with_cron(e, cron), load, threshold, start, end)
            if new:
                placed = (expr, new)
                break
        if placed is None:
            for m in old:
                load[m] += 1
            continue
        for m in placed[1]:
            load[m] = load.get(m, 0) + 1
        changes.append(ScheduleChange(e.agent_id, e.cron.timezone, e.cron.expression, placed[0]))
    if len(changes) < need:
        return None
    text = "; ".join(f"run {_name(fleet, c.agent_id)} at '{c.suggested}' instead of '{c.cron_expression}'"
                     for c in changes)
    return Suggestion(text, tuple(changes))


def _placement(e: FleetSchedule, load: dict[int, int], threshold: int, start: float, end: float) -> set[int] | None:
    """The minutes ``e`` fires in, or None as soon as one of them would reach the threshold."""
    minutes: set[int] = set()
    for _, sched, _ in _fires(e, 0, start, end):
        m = _minute(sched)
        if load.get(m, 0) + 1 >= threshold:
            return None
        minutes.add(m)
    return minutes or None


def _name(fleet: Sequence[FleetSchedule], agent_id: str) -> str:
    return next(e.name for e in fleet if e.agent_id == agent_id)


def _alternatives(e: FleetSchedule) -> Iterator[str]:
    """The H form of the expression first, then its minutes shifted by 1..59 (spread by agent)."""
    if not isinstance(e.cron, CronFires):
        return  # only a cron expression is rewritten; rate() and at() schedules stay put
    fields = _fields(e.cron.expression)
    minutes = sorted(_minute_set(e.cron))
    if len(minutes) >= 60:
        return  # every minute: nothing to shift
    h = _h_form(fields[0], minutes)
    seen = {fields[0]}
    if h is not None:
        seen.add(h)
        yield " ".join([h] + fields[1:])
    k0 = binascii.crc32(e.agent_id.encode()) % 60
    for j in range(60):
        k = (k0 + j) % 60
        if k == 0:
            continue
        text = _render_minutes(sorted((m + k) % 60 for m in minutes))
        if text in seen:
            continue
        seen.add(text)
        yield " ".join([text] + fields[1:])


def _minute_set(cron: FireTimes) -> set[int]:
    """The minutes of the hour a cron expression fires in; one (unknown) minute for the other kinds."""
    if not isinstance(cron, CronFires):
        return {0}
    bits = cron.schedule._plan.minutes  # the compiled minute field (domain-internal)
    return {m for m in range(60) if bits >> m & 1}


def _h_form(field_text: str, minutes: list[int]) -> str | None:
    if "H" in field_text.upper():
        return None  # already hashed: only an explicit offset can move it
    if len(minutes) == 1:
        return "H"
    step = _even_step(minutes)
    return f"H/{step}" if step else None


def _even_step(minutes: list[int]) -> int | None:
    step = minutes[1] - minutes[0]
    if 60 % step == 0 and len(minutes) == 60 // step and all(b - a == step for a, b in zip(minutes, minutes[1:])):
        return step
    return None


def _render_minutes(minutes: list[int]) -> str:
    if len(minutes) == 1:
        return str(minutes[0])
    step = _even_step(minutes)
    if step:
        return f"*/{step}" if minutes[0] == 0 else f"{minutes[0]}-59/{step}"
    return ",".join(map(str, minutes))


def _fields(expression: str) -> list[str]:
    text = expression.strip()
    if text.startswith("@"):
        text = ALIASES[text.lower()]
    return text.split()


def _try_parse(expression: str, e: FleetSchedule) -> FireTimes | None:
    try:
        return CronFires(CronSchedule.parse(expression, e.cron.timezone, hash_id=e.agent_id))
    except CronError:
        return None


def _with_cron(e: FleetSchedule, cron: FireTimes) -> FleetSchedule:
    return FleetSchedule(
        e.agent_id, cron, e.expected_seconds, e.priority, e.overlap_policy, e.start_at, e.end_at,
        e.jitter_seconds, e.from_history, e.label, e.exclude_dates,
    )


# --- formatting ---------------------------------------------------------------------


def _common_zone(fleet: Sequence[FleetSchedule], indexes: Iterable[int]) -> str:
    zones = {fleet[i].cron.timezone for i in indexes}
    return zones.pop() if len(zones) == 1 else "UTC"


def _fmt_time(epoch: float, zone: str) -> str:
    dt = _dt(epoch).astimezone(ZoneInfo(zone)) if zone != "UTC" else _dt(epoch)
    return dt.strftime("%Y-%m-%d %H:%M ") + (dt.tzname() or zone)


def _fmt_dur(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{max(seconds, 0):.3g}s" if seconds < 10 else f"{s}s"
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    parts = ([f"{h}h"] if h else []) + ([f"{m}m"] if m else []) + ([f"{sec}s"] if sec and not h else [])
    return " ".join(parts)
