"""Conflict detection (pure): self-overlap, capacity, hot minutes and their suggestions, DST. No AWS."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.domain.conflicts import (
    ConflictType,
    FleetSchedule,
    expected_run_seconds,
    find_conflicts,
    hot_threshold_for,
    p95,
)
from chalicelib.domain.cron import CronSchedule
from chalicelib.domain.model import OverlapPolicy, Priority
from chalicelib.domain.schedule import ScheduleSpec

NY = "America/New_York"
DAY = 86400


def ts(s: str) -> float:
    return datetime.fromisoformat(s).astimezone(timezone.utc).timestamp()


def fs(agent_id: str, expr: str, expected: float, tz: str = "UTC", **kw) -> FleetSchedule:
    return FleetSchedule(agent_id, CronSchedule.parse(expr, tz, hash_id=agent_id), expected, **kw)


def of_type(report, kind: ConflictType):
    return [c for c in report.conflicts if c.type is kind]


def apply_changes(fleet, suggestion):
    """The fleet with a suggestion's expressions, parsed again (the way a client would save them)."""
    new = {ch.agent_id: ch.suggested for ch in suggestion.changes}
    return [
        fs(e.agent_id, new[e.agent_id], e.expected_seconds, e.cron.timezone, priority=e.priority)
        if e.agent_id in new else e
        for e in fleet
    ]


START = ts("2026-03-02T12:00:00+00:00")


# --- expected run time ---------------------------------------------------------------------
def test_expected_run_time_is_p95_of_history_else_the_timeout():
    assert expected_run_seconds([], 300) == (300.0, False)
    durations = [1000] * 18 + [50_000, 90_000]  # 20 runs, two slow outliers
    assert expected_run_seconds(durations, 300) == (50.0, True)  # nearest rank: the 19th of 20
    assert p95([5]) == 5.0


def test_from_spec_carries_the_policies():
    spec = ScheduleSpec("H * * * *", "Europe/Paris", priority=Priority.HIGH, overlap_policy=OverlapPolicy.ALLOW,
                        jitter_seconds=30)
    e = FleetSchedule.from_spec("ag_x", spec, 12.0, label="nightly")
    assert (e.priority, e.overlap_policy, e.jitter_seconds, e.name) == (Priority.HIGH, OverlapPolicy.ALLOW, 30, "nightly")
    assert e.cron.hash_id == "ag_x"


# --- SELF_OVERLAP ------------------------------------------------------------------------------
def test_self_overlap_when_runs_take_longer_than_the_interval():
    fleet = [fs("slow", "*/5 * * * *", 600), fs("fine", "0 * * * *", 60)]
    r = find_conflicts(fleet, start=START, end=START + DAY, cap=5)
    (c,) = of_type(r, ConflictType.SELF_OVERLAP)
    assert c.agent_ids == ("slow",)
    assert c.at == START and c.occurrences == 288  # collapsed: one entry for the whole day
    assert "SKIP" in c.message and "\n" not in c.message
    assert "144 of 288 fires would be skipped" in c.message  # every other fire: a run lasts two intervals
    # The suggested expression is checked: its fires are at least a run apart.
    (change,) = c.suggestion.changes
    assert change.suggested == "H/10 * * * *"
    fires = CronSchedule.parse(change.suggested, hash_id="slow").between(
        datetime.fromtimestamp(START, timezone.utc), datetime.fromtimestamp(START + DAY, timezone.utc), 1000)
    assert min((b - a).total_seconds() for a, b in zip(fires, fires[1:])) >= 600


def test_no_self_overlap_when_runs_fit():
    r = find_conflicts([fs("a", "*/5 * * * *", 299)], start=START, end=START + DAY, cap=5)
    assert of_type(r, ConflictType.SELF_OVERLAP) == []


def test_allow_policy_reports_concurrent_copies():
    r = find_conflicts([fs("a", "* * * * *", 150, overlap_policy=OverlapPolicy.ALLOW)], start=START,
                       end=START + 3600, cap=10)
    (c,) = of_type(r, ConflictType.SELF_OVERLAP)
    assert "up to 3 runs would overlap" in c.message


def test_a_run_started_before_the_window_still_counts():
    # Fires at 11:00 (before the window) and 11:40; a run takes 50 min.
    r = find_conflicts([fs("a", "0,40 * * * *", 3000)], start=ts("2026-03-02T11:30:00+00:00"),
                       end=ts("2026-03-02T11:50:00+00:00"), cap=5)
    (c,) = of_type(r, ConflictType.SELF_OVERLAP)
    assert c.at == ts("2026-03-02T11:40:00+00:00")


# --- CAPACITY -------------------------------------------------------------------------------------
def test_capacity_excess_names_the_agents_and_the_wait_of_the_lowest_priority():
    fleet = [
        fs("crit", "0 * * * *", 300, priority=Priority.CRITICAL),
        fs("high", "0 * * * *", 300, priority=Priority.HIGH),
        fs("low", "0 * * * *", 300, priority=Priority.LOW),
        fs("other", "30 * * * *", 60),  # never overlaps the others
    ]
    r = find_conflicts(fleet, start=START, end=START + DAY, cap=2, hot_threshold=10)
    (c,) = of_type(r, ConflictType.CAPACITY)
    assert c.agent_ids == ("crit", "high", "low")
    assert [(w.agent_id, w.priority, w.seconds) for w in c.waits] == [("low", Priority.LOW, 300.0)]
    assert c.at == START and c.occurrences == 24 and c.last_at == START + 23 * 3600
    assert "cap of 2" in c.message and "low (LOW) up to 5m" in c.message
    assert find_conflicts(fleet, start=START, end=START + DAY, cap=3, hot_threshold=10).conflicts == ()


def test_capacity_follows_the_queue_through_a_crafted_fleet():
    # cap 2. At 12:00 runs of 10, 15 and 10 minutes, at 12:05 a HIGH one: the HIGH run takes the
    # first free slot (12:10) before the NORMAL one waiting since 12:00, which waits until 12:15.
    fleet = [
        fs("n1", "0 12 * * *", 600),
        fs("n2", "0 12 * * *", 900),
        fs("n3", "0 12 * * *", 600),
        fs("h", "5 12 * * *", 600, priority=Priority.HIGH),
    ]
    r = find_conflicts(fleet, start=START, end=START + 3600, cap=2, hot_threshold=10)
    (c,) = of_type(r, ConflictType.CAPACITY)
    waits = {w.agent_id: w.seconds for w in c.waits}
    assert waits == {"h": 300.0, "n3": 900.0}
    assert c.waits[0].agent_id == "n3"  # longest wait first
    assert c.agent_ids == ("h", "n1", "n2", "n3") and c.at == START


# --- HOT_MINUTE -----------------------------------------------------------------------------------
def test_hot_minute_with_a_suggestion_that_removes_it():
    fleet = [fs(f"ag_{i}", "0 * * * *", 30, priority=Priority.HIGH) for i in range(4)]
    fleet.append(fs("ag_low", "@hourly", 30, priority=Priority.LOW))
    fleet.append(fs("ag_q", "*/15 * * * *", 30, priority=Priority.LOW))
    r = find_conflicts(fleet, start=START, end=START + DAY, cap=3)
    assert r.hot_threshold == hot_threshold_for(3) == 3
    (c,) = of_type(r, ConflictType.HOT_MINUTE)
    assert len(c.agent_ids) == 6 and c.occurrences == 24 and c.at == START
    assert "6 schedules start in the same minute" in c.message
    moved = [ch.agent_id for ch in c.suggestion.changes]
    assert len(moved) == 4 and moved[:2] == ["ag_low", "ag_q"]  # the lowest priority moves first
    forms = {ch.agent_id: ch.suggested for ch in c.suggestion.changes}
    assert forms["ag_q"].endswith(" * * * *") and "/15" in forms["ag_q"]  # still every 15 minutes
    # Recomputing every fire with the suggestion applied: no hot minute is left.
    after = find_conflicts(apply_changes(fleet, c.suggestion), start=START, end=START + DAY, cap=3)
    assert of_type(after, ConflictType.HOT_MINUTE) == []


def test_hot_minute_below_threshold_is_not_reported():
    fleet = [fs(f"ag_{i}", "0 9 * * *", 30) for i in range(4)]
    assert of_type(find_conflicts(fleet, start=START, end=START + DAY, cap=5), ConflictType.HOT_MINUTE) == []
    assert len(of_type(find_conflicts(fleet, start=START, end=START + DAY, cap=4), ConflictType.HOT_MINUTE)) == 1


def test_every_minute_schedules_cannot_be_moved_so_others_are():
    # Threshold 4: two every-minute schedules plus three at :00 make 5 at :00. The every-minute
    # ones cannot move; two of the hourly ones can (2 + 1 a minute stays below 4).
    fleet = [fs(f"ag_m{i}", "* * * * *", 1, priority=Priority.LOW) for i in range(2)]
    fleet += [fs(f"ag_h{i}", "0 * * * *", 1) for i in range(3)]
    r = find_conflicts(fleet, start=START, end=START + 7200, cap=10, hot_threshold=4)
    (c,) = of_type(r, ConflictType.HOT_MINUTE)
    assert len(c.agent_ids) == 5 and c.occurrences == 2
    assert sorted(ch.agent_id for ch in c.suggestion.changes) == ["ag_h0", "ag_h1"]
    after = find_conflicts(apply_changes(fleet, c.suggestion), start=START, end=START + 7200, cap=10, hot_threshold=4)
    assert of_type(after, ConflictType.HOT_MINUTE) == []


def test_no_suggestion_when_nothing_can_move():
    fleet = [fs(f"ag_m{i}", "* * * * *", 1) for i in range(3)]
    r = find_conflicts(fleet, start=START, end=START + 600, cap=3)
    (c,) = of_type(r, ConflictType.HOT_MINUTE)
    assert c.suggestion is None and c.occurrences == 10


def test_jitter_spreads_the_herd():
    fleet = [fs(f"ag_{i}", "0 * * * *", 1, jitter_seconds=3600) for i in range(5)]
    r = find_conflicts(fleet, start=START, end=START + DAY, cap=5)
    assert of_type(r, ConflictType.HOT_MINUTE) == []


# --- DST ------------------------------------------------------------------------------------------
def test_spring_forward_collision_in_new_york():
    # 2026-03-08 in New York: 02:00-03:00 does not exist; fixed times in the gap run at 03:00 EDT,
    # together with the 03:00 job. Only that day collides.
    fleet = [
        fs("ag_gap30", "30 2 * * *", 60, NY),
        fs("ag_gap15", "15 2 * * *", 60, NY),
        fs("ag_three", "0 3 * * *", 60, NY),
    ]
    start, end = ts("2026-03-07T00:00:00-05:00"), ts("2026-03-10T00:00:00-04:00")
    r = find_conflicts(fleet, start=start, end=end, cap=3)
    (c,) = of_type(r, ConflictType.HOT_MINUTE)
    assert c.at == ts("2026-03-08T03:00:00-04:00") and c.occurrences == 1 and c.zone == NY
    assert "03:00 EDT" in c.message
    # The jobs in the gap cannot be moved out of it by a minute: the 03:00 one is moved,
    # and the recomputed fires confirm it.
    assert [ch.agent_id for ch in c.suggestion.changes] == ["ag_three"]
    after = find_conflicts(apply_changes(fleet, c.suggestion), start=start, end=end, cap=3)
    assert of_type(after, ConflictType.HOT_MINUTE) == []
    # The same fleet on the days around it: no conflict at all.
    quiet = find_conflicts(fleet, start=ts("2026-03-09T00:00:00-04:00"), end=end + 5 * DAY, cap=3)
    assert quiet.conflicts == ()


def test_spring_forward_self_overlap_happens_once():
    # 01:00 and 03:00 are two hours apart, except on 2026-03-08 when 02:00-03:00 does not exist.
    fleet = [fs("ag_twice", "0 1,3 * * *", 5400, NY)]
    r = find_conflicts(fleet, start=ts("2026-03-06T00:00:00-05:00"), end=ts("2026-03-11T00:00:00-04:00"), cap=5)
    (c,) = of_type(r, ConflictType.SELF_OVERLAP)
    assert c.occurrences == 1 and c.at == ts("2026-03-08T03:00:00-04:00")
    assert c.suggestion is None  # once, around a DST change: no new schedule needed
    assert "1 of 10 fires would be skipped" in c.message


# --- bounds ---------------------------------------------------------------------------------------
def test_large_fleets_are_cut_short_and_say_so():
    fleet = [fs(f"ag_{i}", "* * * * *", 1) for i in range(50)]
    r = find_conflicts(fleet, start=START, end=START + 7 * DAY, cap=5, max_fires=5000)
    assert r.truncated and r.analyzed_until == START + 100 * 60  # 5000 fires: 100 minutes of 50
    (hot,) = of_type(r, ConflictType.HOT_MINUTE)
    assert hot.occurrences == 100 and len(hot.agent_ids) == 50 and hot.suggestion is None
    (cap,) = of_type(r, ConflictType.CAPACITY)  # 50 runs in the same second, 5 slots
    assert len(cap.waits) == 45


def test_window_must_be_positive():
    with pytest.raises(ValueError):
        find_conflicts([], start=START, end=START, cap=5)
    assert find_conflicts([], start=START, end=START + 60, cap=5).conflicts == ()


def test_start_and_end_of_a_schedule_bound_its_fires():
    fleet = [fs(f"ag_{i}", "0 * * * *", 1) for i in range(2)]
    fleet.append(fs("ag_late", "0 * * * *", 1, start_at=START + 6 * 3600))  # joins at 18:00
    fleet.append(fs("ag_early", "0 * * * *", 1, end_at=START + 2 * 3600))  # leaves after 14:00
    r = find_conflicts(fleet, start=START, end=START + DAY, cap=3)
    hot = {c.agent_ids: (c.at, c.occurrences) for c in of_type(r, ConflictType.HOT_MINUTE)}
    assert hot == {
        ("ag_0", "ag_1", "ag_early"): (START, 3),  # 12:00, 13:00, 14:00
        ("ag_0", "ag_1", "ag_late"): (START + 6 * 3600, 18),  # 18:00 .. 11:00
    }
