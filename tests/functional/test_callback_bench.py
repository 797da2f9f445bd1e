"""The callback path's cost per async run, counted with botocore hooks (never a time)."""
from __future__ import annotations

from collections import Counter

from bench.callbackpath import measure_callback_path


def test_an_async_run_costs_one_write_per_step_once_the_attempt_is_known():
    r = measure_callback_path(3)
    assert r.results == Counter({"accepted": 3})
    assert r.by_phase["claim"] == Counter({"UpdateItem": 3})  # the token's hash rides on the claim
    assert r.by_phase["accept"] == Counter({"UpdateItem": 3})
    assert r.by_phase["progress"] == Counter({"GetItem": 3, "UpdateItem": 3})  # first call of the attempt: one read
    assert r.by_phase["heartbeat"] == Counter({"UpdateItem": 3})  # then the write alone
    assert r.by_phase["complete"] == Counter({"TransactWriteItems": 3})
    assert r.own_per_run() <= 6.5
