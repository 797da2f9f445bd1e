"""Structured logs: JSON lines through Powertools, with the run keys and the correlation id."""
from __future__ import annotations

import io
import json
import logging
import threading
from datetime import datetime, timezone

import pytest

from chalicelib import observability
from chalicelib.errors import ConfigError
from chalicelib.settings import read_log_level


@pytest.fixture
def lines():
    """Configure the logger onto a buffer; yield a function returning the JSON lines so far."""
    names = (observability.APP_LOGGER, observability.SERVICE)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    buf = io.StringIO()
    observability.configure("INFO", stream=buf)

    def read() -> list[dict]:
        return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]

    try:
        yield read
    finally:  # leave the loggers as other tests found them
        observability.configure("INFO", stream=io.StringIO())
        for n, (handlers, level, propagate) in saved.items():
            std = logging.getLogger(n)
            std.handlers[:], std.level, std.propagate = handlers, level, propagate


def test_a_run_line_is_json_with_the_fixed_keys(lines):
    fire = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    with observability.bind_run(tenant_id="t1", agent_id="a1", session_id="s1", attempt=2, fire_time=fire):
        logging.getLogger("agent_scheduler.worker").info("run started")
    logging.getLogger("agent_scheduler.worker").info("after the run")

    first, after = lines()
    assert first["message"] == "run started"
    assert first["level"] == "INFO"
    assert first["service"] == "agent-scheduler"
    assert first["name"] == "agent_scheduler.worker"
    assert {k: first[k] for k in observability.RUN_KEYS} == {
        "tenant_id": "t1", "agent_id": "a1", "session_id": "s1", "attempt": 2, "fire_time": "2026-03-02T12:00:00Z",
    }
    assert not set(observability.RUN_KEYS) & set(after), "the keys end with the block"


def test_fire_time_as_epoch_seconds_and_missing_attempt(lines):
    with observability.bind_run(tenant_id="t", agent_id="a", session_id="s", fire_time=1772452800.0):
        logging.getLogger("agent_scheduler.dispatch").warning("late")
    (line,) = lines()
    assert line["fire_time"] == "2026-03-02T12:00:00Z"
    assert "attempt" not in line and line["level"] == "WARNING"


def test_correlation_id_from_an_api_gateway_event(lines):
    event = {"requestContext": {"requestId": "req-123", "resourcePath": "/health"}, "headers": {}}
    assert observability.correlation_id(event) == "req-123"
    assert observability.correlation_id({"headers": {}}) is None
    assert observability.correlation_id(None) is None
    with observability.request_scope(event):
        logging.getLogger("agent_scheduler.app").info("request")
    logging.getLogger("agent_scheduler.app").info("between requests")
    inside, outside = lines()
    assert inside["correlation_id"] == "req-123"
    assert "correlation_id" not in outside


def test_nested_binds_restore_the_outer_values(lines):
    log = logging.getLogger("agent_scheduler.worker")
    with observability.bind(correlation_id="outer", attempt=1):
        with observability.bind(attempt=2):
            log.info("inner")
        log.info("outer")
    inner, outer = lines()
    assert (inner["correlation_id"], inner["attempt"]) == ("outer", 2)
    assert (outer["correlation_id"], outer["attempt"]) == ("outer", 1)


def test_keys_bound_in_one_thread_never_reach_another(lines):
    log = logging.getLogger("agent_scheduler.worker")
    bound, release = threading.Event(), threading.Event()

    def other():
        with observability.bind_run(tenant_id="t-other", agent_id="a", session_id="s-other", attempt=1):
            bound.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert bound.wait(5)
    log.info("main thread")
    release.set()
    t.join(5)
    (line,) = lines()
    assert "tenant_id" not in line and "session_id" not in line


def test_level_comes_from_the_setting_and_filters(lines):
    observability.configure("WARNING")
    logging.getLogger("agent_scheduler.worker").info("dropped")
    logging.getLogger("agent_scheduler.worker").warning("kept")
    assert [line["message"] for line in lines()] == ["kept"]
    assert read_log_level({}) == "INFO"
    assert read_log_level({"SCHEDULER_LOG_LEVEL": "debug"}) == "DEBUG"
    with pytest.raises(ConfigError, match="SCHEDULER_LOG_LEVEL"):
        read_log_level({"SCHEDULER_LOG_LEVEL": "chatty"})


def test_chalice_app_log_becomes_json_too(lines):
    logging.getLogger(observability.SERVICE).error("from app.log")
    (line,) = lines()
    assert line["message"] == "from app.log" and line["level"] == "ERROR"
