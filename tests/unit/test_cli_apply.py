"""The agents-as-code planner: pure comparisons of a file with the tenant's agents."""
from __future__ import annotations

import pytest

from agent_scheduler.cli import apply as A
from chalicelib.agents.registry import get_kind


def agent(name="report", kind="echo", **fields) -> dict:
    base = {"id": f"ag_{abs(hash(name)) % 10**20:020d}", "name": name, "kind": kind, "config": {}, "description": None,
            "timeoutSeconds": 300, "maxRetries": 3, "schedule": None}
    return {**base, **fields}


SERVER_SCHEDULE = {"agentId": "x", "cronExpression": "0 9 * * *", "timezone": "Europe/Paris", "priority": "NORMAL",
                   "enabled": True, "catchup": "LATEST", "catchupWindowSeconds": 3600, "overlapPolicy": "SKIP",
                   "startAt": "2026-04-01T02:00:00+02:00", "endAt": None, "jitterSeconds": 0,
                   "nextRunAt": "2026-04-01T09:00:00+02:00", "nextRuns": []}


def test_the_kind_defaults_the_planner_knows_are_the_servers():
    minimal = {"echo": {}, "fail": {}, "sleep": {"seconds": 1}, "http": {"url": "https://example.com/"},
               "lambda": {"functionName": "f"}, "webhook": {"url": "https://agents.example.com/run"}}
    for kind, config in minimal.items():
        filled = get_kind(kind).validate_config(dict(config))
        assert A.normalized_config(kind, config) == filled, kind


def test_description_carries_the_apply_set():
    assert A.join_description("nightly", "prod") == "nightly\n\n[applyset: prod]"
    assert A.join_description(None, "prod") == "[applyset: prod]"
    assert A.split_description("nightly\n\n[applyset: prod]") == ("nightly", "prod")
    assert A.split_description("[applyset: prod]") == (None, "prod")
    assert A.split_description("see [applyset: x] above") == ("see [applyset: x] above", None)
    assert A.split_description(None) == (None, None)


def test_default_applyset_is_the_file_name():
    assert A.default_applyset("deploy/agents.prod.yaml") == "agents.prod.yaml"
    assert A.default_applyset("my agents.yaml") == "my-agents.yaml"


def test_a_new_agent_is_created_with_every_field_and_the_set():
    [step] = A.plan([{"name": "r", "kind": "echo", "schedule": {"cronExpression": "@daily"}}], [], applyset="s", prune=False)
    assert step.action == "created"
    assert step.create == {"name": "r", "kind": "echo", "config": {}, "labels": {A.APPLYSET_LABEL: "s"},
                           "timeoutSeconds": 300, "maxRetries": 3}
    assert step.schedule == {"cronExpression": "@daily"}
    [labelled] = A.plan([{"name": "r", "kind": "echo", "labels": {"team": "ops"}}], [], applyset="s", prune=False)
    assert labelled.create["labels"] == {"team": "ops", A.APPLYSET_LABEL: "s"}


def test_the_same_agent_is_unchanged_even_with_server_filled_config_and_zoned_times():
    current = agent(kind="http", config={"url": "https://x.test/", "method": "GET", "headers": {}},
                    description="d", labels={A.APPLYSET_LABEL: "s"}, schedule=SERVER_SCHEDULE)
    spec = {"name": "report", "kind": "http", "config": {"url": "https://x.test/"}, "description": "d",
            "schedule": {"cronExpression": " 0 9 * * * ", "timezone": "Europe/Paris", "startAt": "2026-04-01T00:00:00Z"}}
    [step] = A.plan([spec], [current], applyset="s", prune=False)
    assert step.action == "unchanged" and step.changes == ()


def test_a_field_left_out_returns_to_its_default():
    current = agent(timeoutSeconds=60, maxRetries=7, description="old", config={"message": "x"})
    [step] = A.plan([{"name": "report", "kind": "echo"}], [current], applyset="s", prune=False, max_retries_default=2)
    assert step.patch == {"timeoutSeconds": 300, "maxRetries": 2, "description": None, "config": {}}
    assert {c.field for c in step.changes} == {"timeoutSeconds", "maxRetries", "description", "config"}


def test_an_updated_agent_keeps_its_apply_set_and_a_handmade_one_gets_none():
    labelled = agent(labels={A.APPLYSET_LABEL: "other", "team": "ops"})
    [step] = A.plan([{"name": "report", "kind": "echo", "description": "new"}], [labelled], applyset="s", prune=False)
    assert step.patch == {"description": "new", "labels": {A.APPLYSET_LABEL: "other"}}  # team: not in the file
    [step] = A.plan([{"name": "report", "kind": "echo", "labels": {"team": "ops"}}], [labelled], applyset="s", prune=False)
    assert step.action == "unchanged"
    [step] = A.plan([{"name": "report", "kind": "echo", "description": "new"}], [agent()], applyset="s", prune=False)
    assert step.patch == {"description": "new"}


def test_a_new_kind_sends_its_config_with_it():
    [step] = A.plan([{"name": "report", "kind": "sleep", "config": {"seconds": 1}}], [agent()], applyset="s", prune=False)
    assert step.patch == {"kind": "sleep", "config": {"seconds": 1}}


def test_schedule_changes_field_by_field_and_removal():
    current = agent(schedule=SERVER_SCHEDULE)
    spec = {"name": "report", "kind": "echo", "schedule": {"cronExpression": "0 10 * * *", "priority": "HIGH"}}
    [step] = A.plan([spec], [current], applyset="s", prune=False)
    fields = {c.field: (c.old, c.new) for c in step.changes}
    assert fields == {"schedule.expression": ("0 9 * * *", "0 10 * * *"), "schedule.timezone": ("Europe/Paris", "UTC"),
                      "schedule.priority": ("NORMAL", "HIGH"), "schedule.startAt": ("2026-04-01T02:00:00+02:00", None)}
    assert step.schedule == spec["schedule"] and step.patch is None
    [step] = A.plan([{"name": "report", "kind": "echo"}], [current], applyset="s", prune=False)
    assert step.delete_schedule and step.schedule is None and step.changes[0].field == "schedule"


def test_fields_some_servers_have_are_compared_and_reset_to_null():
    current = agent(maxConcurrency=3, throttle=None)
    [step] = A.plan([{"name": "report", "kind": "echo"}], [current], applyset="s", prune=False)
    assert step.patch == {"maxConcurrency": None}
    [step] = A.plan([{"name": "report", "kind": "echo", "throttle": {"limit": 1, "periodSeconds": 60}}], [current],
                    applyset="s", prune=False)
    assert step.patch == {"maxConcurrency": None, "throttle": {"limit": 1, "periodSeconds": 60}}


def test_an_agent_marked_the_older_way_moves_its_set_into_the_labels():
    old = agent(description="nightly\n\n[applyset: s]")
    [step] = A.plan([{"name": "report", "kind": "echo", "description": "nightly"}], [old], applyset="s", prune=False)
    assert step.patch == {"description": "nightly", "labels": {A.APPLYSET_LABEL: "s"}}
    moved = agent(description="nightly", labels={A.APPLYSET_LABEL: "s"})
    [step] = A.plan([{"name": "report", "kind": "echo", "description": "nightly"}], [moved], applyset="s", prune=False)
    assert step.action == "unchanged"


def test_prune_takes_only_agents_of_the_set_the_file_no_longer_names():
    current = [agent("keep", labels={A.APPLYSET_LABEL: "s"}), agent("gone", labels={A.APPLYSET_LABEL: "s"}),
               agent("gone-marked-the-older-way", description="x\n\n[applyset: s]"),
               agent("other-set", labels={A.APPLYSET_LABEL: "t"}), agent("other-set-older", description="[applyset: t]"),
               agent("handmade", labels={"team": "s"})]
    steps = A.plan([{"name": "keep", "kind": "echo"}], current, applyset="s", prune=True)
    assert [(s.name, s.action) for s in steps] == [("keep", "unchanged"), ("gone", "deleted"),
                                                   ("gone-marked-the-older-way", "deleted")]
    assert [s.name for s in A.plan([], current, applyset="s", prune=False)] == []


def test_a_name_two_agents_share_fails_naming_both():
    a, b = agent("dup", id="ag_1"), agent("dup", id="ag_2")
    [step] = A.plan([{"name": "dup", "kind": "echo"}], [a, b], applyset="s", prune=False)
    assert step.action == "failed" and "ag_1" in step.error and "ag_2" in step.error


def test_yaml_keeps_timestamps_as_written():
    [spec] = A.load("agents:\n- name: a\n  kind: echo\n  schedule: {cronExpression: '@daily', startAt: 2026-04-01T00:00:00Z}\n", "f")
    assert spec["schedule"]["startAt"] == "2026-04-01T00:00:00Z"


@pytest.mark.parametrize("old,new,same", [
    ({"a": 1}, {"a": 1}, True), (None, [], True), (None, {}, True), ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z", True),
    ("x", "y", False), (0, None, False),
])
def test_sameness(old, new, same):
    assert A._same("schedule.startAt" if isinstance(old, str) and "T" in old else "f", old, new) is same


def test_a_budget_the_server_filled_with_its_defaults_is_unchanged():
    current = agent(budget={"maxRunsPerDay": 5, "timezone": "UTC", "onExhausted": "SKIP"})
    [step] = A.plan([{"name": "report", "kind": "echo", "budget": {"maxRunsPerDay": 5}}], [current],
                    applyset="s", prune=False)
    assert step.action == "unchanged", step.changes
    [step] = A.plan([{"name": "report", "kind": "echo", "budget": {"maxRunsPerDay": 5, "onExhausted": "PAUSE"}}],
                    [current], applyset="s", prune=False)
    assert step.patch == {"budget": {"maxRunsPerDay": 5, "onExhausted": "PAUSE"}}
    [step] = A.plan([{"name": "report", "kind": "echo"}], [current], applyset="s", prune=False)
    assert step.patch == {"budget": None}


def test_every_limit_the_file_leaves_out_returns_to_null():
    current = agent(maxConcurrency=2, throttle={"limit": 1, "periodSeconds": 60}, pools=["gpu"],
                    budget={"maxRunsPerDay": 5, "timezone": "UTC", "onExhausted": "SKIP"},
                    pauseAfterFailures=3, heartbeatSeconds=30)
    [step] = A.plan([{"name": "report", "kind": "echo"}], [current], applyset="s", prune=False)
    assert step.patch == {k: None for k in ("maxConcurrency", "throttle", "pools", "budget", "pauseAfterFailures",
                                            "heartbeatSeconds")}
    same = {"name": "report", "kind": "echo", "maxConcurrency": 2, "throttle": {"limit": 1, "periodSeconds": 60},
            "pools": ["gpu"], "budget": {"maxRunsPerDay": 5}, "pauseAfterFailures": 3, "heartbeatSeconds": 30}
    [step] = A.plan([same], [current], applyset="s", prune=False)
    assert step.action == "unchanged", step.changes
