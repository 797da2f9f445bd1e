"""The SQS adapter's outgoing message: its delay counts from when its batch is sent."""
from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.adapters.queues import OutMessage

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc).timestamp()


def test_delay_counts_from_when_each_batch_is_sent():
    m = OutMessage("s", {}, delay_seconds=41, deliver_at=NOW + 41.7)
    assert m.delay(NOW) == 41
    assert m.delay(NOW + 3.2) == 38, "a batch sent 3.2 s into a long tick waits 3 s less"
    assert m.delay(NOW + 100) == 0
    assert m.delay(None) == 41
