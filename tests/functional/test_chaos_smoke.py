"""``make chaos`` at its smoke size: a few hundred scheduled fires over about an hour of
simulated time on moto, under injected faults, killed ticks and workers, duplicate and late
deliveries, racing ticks and cancels; nothing lost, duplicated, stuck, over the cap or out
of priority order."""
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
    assert result.ok, (result.line, problems[:20])
    assert result.line.endswith("0 lost, 0 duplicates, 0 stuck, 0 cap violations, 0 priority inversions")
