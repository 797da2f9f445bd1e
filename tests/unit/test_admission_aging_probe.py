"""Which waiting runs the tick's admission reads beside the head of the pending order, so that
aging can lift a run that waits behind a deep backlog of a higher stored priority. Pure."""
from __future__ import annotations

from chalicelib.domain.admission import Candidate, aged_past_stored, aging_probe_ranks
from chalicelib.domain.model import Priority

NOW = 1_800_000_000.0


def cand(sid, prio, waited, backfill=False):
    return Candidate(sid, "t1", "a1", Priority(prio), NOW - waited, 60, backfill=backfill)


def test_only_the_priorities_that_can_age_are_probed_and_none_with_aging_off():
    assert aging_probe_ranks(600) == (Priority.NORMAL.rank, Priority.LOW.rank)
    assert aging_probe_ranks(0) == ()


def test_a_probed_run_counts_only_once_it_ranks_above_its_stored_priority():
    cs = [cand("low-young", "LOW", 599), cand("low-aged", "LOW", 600), cand("normal-aged", "NORMAL", 1300),
          cand("high-old", "HIGH", 5000), cand("backfill-old", "LOW", 5000, backfill=True)]
    assert [c.session_id for c in aged_past_stored(cs, NOW, 600)] == ["low-aged", "normal-aged"]
    assert aged_past_stored(cs, NOW, 0) == []
