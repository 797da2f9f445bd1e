"""The callback rules (domain/callbacks.py): tokens, which call is allowed when, liveness."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain import callbacks as cb
from chalicelib.domain.callbacks import Action, AttemptState, EndedBy, Verdict
from chalicelib.domain.model import ErrorCategory, Priority, SessionStatus, Trigger
from chalicelib.domain.records import Session
from chalicelib.domain.runflow import Backoff, Next
from chalicelib.errors import ConfigError
from chalicelib.settings import Settings

B = Backoff(1.0, 300.0, lambda: 0.0)


def run(**kw) -> Session:
    base: dict[str, Any] = dict(agent_id="ag_1", session_id="s1", tenant_id="t", status=SessionStatus.RUNNING, trigger=Trigger.MANUAL,
                priority=Priority.NORMAL, scheduled_for=0.0, queued_at=0.0, max_attempts=3, timeout_seconds=300,
                attempt=2, claim="c2", callback_hash=cb.token_hash("tok2"), prev_callback_hash=cb.token_hash("tok1"))
    base.update(kw)
    return Session(**base)


def test_tokens_name_their_agent_carry_256_bits_and_only_their_hash_is_kept():
    t = cb.new_token("ag_abc")
    assert cb.token_agent(t) == "ag_abc"
    assert len(t.split(".", 1)[1]) >= 43 and cb.new_token("ag_abc") != t
    assert cb.token_hash(t) != t and len(cb.token_hash(t)) == 64
    for bad in (None, "", "nodot", "ag.short", "." + "a" * 40, "a" * 301):
        assert cb.token_agent(bad) is None, bad
    assert cb.same_hash("ab", "ab") and not cb.same_hash("ab", "ac") and not cb.same_hash(None, None)


def test_the_attempt_a_call_names():
    h1, h2 = cb.token_hash("tok1"), cb.token_hash("tok2")
    assert cb.attempt_state(run(), 2, h2) == AttemptState(True, live=True)
    assert cb.attempt_state(run(), 2, h1) == AttemptState(False)  # the previous attempt's token
    assert cb.attempt_state(run(), 3, h2) == AttemptState(False)  # an attempt that never was
    assert cb.attempt_state(None, 1, h1) == AttemptState(False)
    assert cb.attempt_state(run(), 0, h2) == AttemptState(False)
    # The previous attempt: ended, as recorded while it is the last that ended, else SUPERSEDED.
    ended1 = run(end_attempt=1, ended_by="HEARTBEAT", end_hash="e")
    assert cb.attempt_state(ended1, 1, h1) == AttemptState(True, ended_by=EndedBy.HEARTBEAT, end_hash="e")
    assert cb.attempt_state(run(), 1, h1) == AttemptState(True, ended_by=EndedBy.SUPERSEDED)
    # The current attempt ended: its record, or (an end written without one) from the status.
    done = run(status=SessionStatus.SUCCEEDED, claim=None, end_attempt=2, ended_by="COMPLETED", end_hash="x")
    assert cb.attempt_state(done, 2, h2) == AttemptState(True, ended_by=EndedBy.COMPLETED, end_hash="x")
    assert cb.attempt_state(run(status=SessionStatus.DEAD, claim=None), 2, h2).ended_by is EndedBy.FAILED
    assert cb.attempt_state(run(status=SessionStatus.CANCELLED, claim=None), 2, h2).ended_by is EndedBy.CANCELLED
    # RUNNING again on the same attempt number never happens without a new claim; ended wins.
    assert cb.attempt_state(run(end_attempt=2, ended_by="DEADLINE"), 2, h2).ended_by is EndedBy.DEADLINE


@pytest.mark.parametrize("state, action, same_body, verdict", [
    (AttemptState(False), Action.COMPLETE, True, Verdict.NOT_FOUND),
    (AttemptState(True, live=True), Action.PROGRESS, False, Verdict.APPLY),
    (AttemptState(True, live=True), Action.COMPLETE, False, Verdict.APPLY),
    (AttemptState(True, ended_by=EndedBy.COMPLETED, end_hash="H"), Action.COMPLETE, True, Verdict.REPEAT),
    (AttemptState(True, ended_by=EndedBy.COMPLETED, end_hash="H"), Action.COMPLETE, False, Verdict.FINISHED),
    (AttemptState(True, ended_by=EndedBy.FAILED, end_hash="H"), Action.FAIL, True, Verdict.REPEAT),
    (AttemptState(True, ended_by=EndedBy.COMPLETED, end_hash="H"), Action.HEARTBEAT, True, Verdict.FINISHED),
    (AttemptState(True, ended_by=EndedBy.DEADLINE), Action.COMPLETE, True, Verdict.FINISHED),
    (AttemptState(True, ended_by=EndedBy.CANCELLED), Action.PROGRESS, False, Verdict.FINISHED),
])
def test_which_call_is_allowed_when(state, action, same_body, verdict):
    assert cb.judge(state, action, "H" if same_body else "other") is verdict


def test_the_hash_of_an_ending_call_covers_its_action_and_canonical_body():
    a = cb.body_hash(Action.COMPLETE, {"output": 1, "usage": {"b": 1, "a": 2}})
    assert a == cb.body_hash(Action.COMPLETE, {"usage": {"a": 2, "b": 1}, "output": 1})
    assert a != cb.body_hash(Action.FAIL, {"output": 1, "usage": {"b": 1, "a": 2}})
    assert a != cb.body_hash(Action.COMPLETE, {"output": 2, "usage": {"b": 1, "a": 2}})


def test_the_async_lease_is_the_heartbeat_or_the_deadline_whichever_is_first():
    assert cb.deadline_of(100.0, 300) == 400.0
    assert cb.async_lease(110.0, 400.0, 60) == 170.0
    assert cb.async_lease(380.0, 400.0, 60) == 400.0
    assert cb.async_lease(110.0, 400.0, None) == 400.0
    assert cb.expiry_reason(400.0, 400.0) is EndedBy.DEADLINE
    assert cb.expiry_reason(170.0, 400.0) is EndedBy.HEARTBEAT


def test_an_expired_async_attempt_is_a_timeout_through_the_outcome_table():
    t = cb.after_expiry(EndedBy.HEARTBEAT, heartbeat_seconds=30, timeout_seconds=300, attempt=1, max_attempts=3,
                        cancel_requested=False, now=1000.0, backoff=B)
    assert t.next is Next.RETRY and t.error["category"] == "TIMEOUT" and "30 s" in t.error["message"]
    t = cb.after_expiry(EndedBy.DEADLINE, heartbeat_seconds=None, timeout_seconds=300, attempt=3, max_attempts=3,
                        cancel_requested=False, now=1000.0, backoff=B)
    assert t.next is Next.DEAD and "300 s" in t.error["message"]
    t = cb.after_expiry(EndedBy.DEADLINE, heartbeat_seconds=None, timeout_seconds=300, attempt=1, max_attempts=3,
                        cancel_requested=True, now=1000.0, backoff=B)
    assert t.next is Next.CANCELLED


def test_a_fail_call_through_the_outcome_table():
    def fail(category, non_retryable=False, attempt=1, retry_after=None):
        return cb.after_fail(category=category, message="m", non_retryable=non_retryable, retry_after=retry_after,
                             attempt=attempt, max_attempts=3, cancel_requested=False, now=1000.0, backoff=B)

    assert fail(ErrorCategory.TRANSIENT).next is Next.RETRY
    assert fail(ErrorCategory.AGENT_ERROR, non_retryable=True).next is Next.DEAD
    assert fail(ErrorCategory.PERMANENT).next is Next.DEAD
    assert fail(ErrorCategory.TRANSIENT, attempt=3).next is Next.DEAD
    assert fail(ErrorCategory.TRANSIENT, retry_after=20).next_attempt_at == 1020.0


def test_progress_events_are_throttled_across_calls():
    assert cb.allow_progress_event(None, 10.0, 5)
    assert not cb.allow_progress_event(10.0, 10.3, 6)
    assert cb.allow_progress_event(10.0, 10.5, 7)
    assert cb.allow_progress_event(10.0, 10.1, 100)


def test_how_a_synchronous_answer_ended_its_attempt():
    assert cb.ended_by_for("SUCCEEDED") is EndedBy.COMPLETED
    assert cb.ended_by_for("RETRY", category="TIMEOUT") is EndedBy.DEADLINE
    assert cb.ended_by_for("DEAD", category="PERMANENT") is EndedBy.FAILED
    assert cb.ended_by_for("CANCELLED", category="CANCELLED") is EndedBy.CANCELLED


def test_the_public_url_setting():
    assert Settings.from_env({}).callback_base == "http://127.0.0.1:8000/api"
    assert Settings.from_env({"SCHEDULER_API_PORT": "9000"}).callback_base == "http://127.0.0.1:9000/api"
    s = Settings.from_env({"SCHEDULER_PUBLIC_URL": "https://x.execute-api.eu-west-1.amazonaws.com/api/"})
    assert s.callback_base == "https://x.execute-api.eu-west-1.amazonaws.com/api"
    for bad in ("ftp://x/api", "not a url", "https://x/api?a=1", "https://u:p@x/api"):
        with pytest.raises(ConfigError) as e:
            Settings.from_env({"SCHEDULER_PUBLIC_URL": bad})
        assert "SCHEDULER_PUBLIC_URL" in str(e.value)
