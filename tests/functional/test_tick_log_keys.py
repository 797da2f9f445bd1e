"""The tick's log lines about one schedule carry that schedule's keys (captured JSON lines)."""
from __future__ import annotations

import io
import json
import logging

import pytest

from chalicelib import observability
from chalicelib.adapters.tables import AgentTenantModel
from tests.functional.test_dispatch import make_agent, schedule

SCHEDULE_KEYS = ("tenant_id", "agent_id", "fire_time")


@pytest.fixture
def lines():
    """The agent_scheduler.* loggers at DEBUG onto a buffer; a function reading the JSON lines."""
    names = (observability.APP_LOGGER, observability.SERVICE)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    buf = io.StringIO()
    observability.configure("DEBUG", stream=buf)
    try:
        yield lambda: [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    finally:
        observability.configure("INFO", stream=io.StringIO())
        for n, (handlers, level, propagate) in saved.items():
            std = logging.getLogger(n)
            std.handlers[:], std.level, std.propagate = handlers, level, propagate


def test_each_schedule_the_tick_plans_logs_with_its_tenant_agent_and_fire_time(api, other_api, system, clock, lines):
    good = make_agent(api, "good")
    schedule(api, good, "1 12 * * *")  # 12:01:00, beyond the lookahead at 11:59:30: the tick plans it
    broken = make_agent(other_api, "broken")
    schedule(other_api, broken, "1 12 * * *")
    item = AgentTenantModel.get("tenant-b", broken)
    item.update(actions=[AgentTenantModel.schedule.set({**item.schedule, "cronExpression": "61 * * * *"})])

    clock.advance(30)  # 12:00:00
    report = system.dispatcher.tick()
    assert report.created == 1 and report.failed_groups == 1

    got = lines()
    planned = [x for x in got if x["message"] == "schedule planned"]
    assert [{k: x[k] for k in SCHEDULE_KEYS} for x in planned] == [
        {"tenant_id": "tenant-a", "agent_id": good, "fire_time": "2026-03-02T12:01:00Z"}]
    assert planned[0]["sessions"] == 1 and planned[0]["level"] == "DEBUG"
    (failed,) = [x for x in got if x["message"] == "schedule could not be planned"]
    assert {k: failed[k] for k in SCHEDULE_KEYS} == {
        "tenant_id": "tenant-b", "agent_id": broken, "fire_time": "2026-03-02T12:01:00Z"}
    assert failed["level"] == "ERROR" and "61" in failed["exception"]
    (summary,) = [x for x in got if x["message"] == "tick"]
    assert not set(SCHEDULE_KEYS) & set(summary), "the keys end with each schedule"
