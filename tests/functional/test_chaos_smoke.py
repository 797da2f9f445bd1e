"""``make chaos`` at its smoke size: a few hundred scheduled fires over about an hour of
simulated time on moto, under injected faults, killed ticks and workers, duplicate and late
deliveries, racing ticks and cancels, rate() and at() schedules beside cron, and backfills
racing the tick, with agent, pool and tenant limits switched on for some agents; nothing lost,
duplicated, stuck, over the cap (global or keyed) or out of priority order."""
from __future__ import annotations

from devtools import chaos


def test_chaos_smoke_counts_five_zeros():
    problems: list[str] = []
    result = chaos.run(chaos.SMOKE_FIRES, seed=7, log=problems.append)
    assert result.fires >= 300, result.line
    stats = result.details["stats"]
    # the faults really happened: kills, duplicates, late deliveries, cancels, retries
    assert stats.get("twice", 0) and stats.get("late", 0), stats
    assert stats.get("ticks_killed", 0) + stats.get("workers_killed", 0) > 0, stats
    assert sum(n for k, n in stats.items() if k.startswith("cancel")) > 0, stats
    assert result.details["statuses"].get("SUCCEEDED", 0) > result.fires // 2, result.details
    # rate() and at() fires were among those checked, and backfills ran: over a disabled window
    # (creating runs while the catch-up wrote the same fires) and over live ones (creating none twice)
    kinds = result.details["fires_by_kind"]
    assert kinds.get("rate", 0) >= 10 and kinds.get("at", 0) >= 4, kinds
    # (which of the backfill and the catch-up wrote a fire first is the race: either may)
    assert stats.get("behind-backfill:202") == 1 and stats.get("backfill:202", 0) >= 2, stats
    assert result.details["backfilled_fires"] >= 60, result.details
    # at() saves and backfills were answered as the contract says (only injected faults fail them)
    assert not [k for k in stats if k.startswith(("api:at:", "api:backfill:"))], stats
    # limits were on: an agent's, a pool's and a tenant's ran full, and held runs back
    assert stats.get("peak_running_A") == stats.get("peak_running_P") == 1, stats
    assert stats.get("peak_running_T", 0) >= 2 and stats.get("held_by_own_limit", 0) > 0, stats
    assert result.ok, (result.line, problems[:20])
    assert result.line.endswith("0 lost, 0 duplicates, 0 stuck, 0 cap violations, 0 priority inversions")
