"""The run path under faults: each case a deterministic reproduction of a loss, a stuck run or
a cap violation that an earlier design had, with faults injected at the botocore seam."""
from __future__ import annotations

import pytest

from chalicelib.adapters.tables import ControlModel, SessionModel
from chalicelib.domain.admission import slot_limits
from chalicelib.errors import StorageError
from devtools.faults import Faults
from tests.functional.helpers import take, work
from tests.functional.test_dispatch import make_agent, schedule, sessions


def run_now(api, aid, **body):
    r = api.post(f"/api/agents/{aid}/run", body)
    assert r.status_code == 202, r.body
    return r.json["sessionId"]


def used(system) -> int:
    total = 0
    for name, _ in slot_limits(system.settings.max_concurrent_agents):
        try:
            total += int(ControlModel.get("SLOTS#" + name, consistent_read=True).used or 0)
        except ControlModel.DoesNotExist:
            pass
    return total


def status_of(api, aid, sid):
    return api.get(f"/api/agents/{aid}/sessions/{sid}").json["status"]


@pytest.fixture
def faults():
    f = Faults(seed=11)
    with f.installed():
        yield f


# 1. A schedule thousands of fires behind never stops the tick ------------------------------
@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 5}])
def test_a_schedule_two_hours_behind_fits_its_transactions_and_others_still_run(api, other_api, system, clock):
    behind = make_agent(api, "behind")
    body = dict(catchup="ALL", catchupWindowSeconds=7200)
    schedule(api, behind, "* * * * *", **body)
    schedule(api, behind, "* * * * *", enabled=False, **body)
    clock.advance(2 * 3600)
    schedule(api, behind, "* * * * *", enabled=True, **body)
    other = make_agent(other_api, "other")
    schedule(other_api, other, "* * * * *")
    clock.advance(60)
    report = system.dispatcher.tick()
    assert report.failed_groups == 0
    sent = {m.body["a"] for m in take(system)}
    assert other in sent, "another tenant's run is still sent"
    for _ in range(5):
        clock.advance(60)
        assert system.dispatcher.tick().failed_groups == 0


# 2. An admitted run whose send was lost is found again after its lease -------------------------
def test_an_admitted_run_never_sent_is_recovered_after_its_lease(api, system, clock, faults):
    aid = make_agent(api)
    faults.add("SendMessageBatch", "throttle", times=1)  # the send fails
    sid = run_now(api, aid)
    assert take(system) == []
    assert used(system) == 1, "the admitted run holds its slot"
    clock.advance(system.settings.resend_grace_seconds + 1)
    report = system.dispatcher.tick()
    assert report.resent == 1
    assert work(system, take(system)) == ["succeeded"]
    assert status_of(api, aid, sid) == "SUCCEEDED" and used(system) == 0


# 3. A retried write that had committed is recognised, not read as a lost race -------------------
def test_a_retried_admission_transaction_that_committed_still_sends(api, system, faults):
    aid = make_agent(api)
    faults.add("TransactWriteItems", "retried_commit", times=1)
    sid = run_now(api, aid)
    sent = take(system)
    assert [m.body["s"] for m in sent] == [sid]
    assert work(system, sent) == ["succeeded"] and used(system) == 0


def test_a_retried_claim_that_committed_runs_the_agent(api, system, faults):
    aid = make_agent(api)
    sid = run_now(api, aid)
    faults.add("UpdateItem", "retried_commit", times=1)
    assert work(system, take(system)) == ["succeeded"]
    assert status_of(api, aid, sid) == "SUCCEEDED" and used(system) == 0


def test_a_lost_answer_to_the_finish_leaves_nothing_running(api, system, clock, faults):
    aid = make_agent(api)
    sid = run_now(api, aid)
    msgs = take(system)
    faults.add("TransactWriteItems", "lost_answer", times=1)
    with pytest.raises(StorageError):
        work(system, msgs)  # the message is redelivered
    assert work(system, msgs) == ["duplicate"]  # the redelivery sees the finished run
    assert status_of(api, aid, sid) == "SUCCEEDED" and used(system) == 0


# 4. Crash recovery goes through admission -------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1}])
def test_an_abandoned_run_waits_behind_higher_priorities_and_never_exceeds_the_cap(api, system, clock):
    low = make_agent(api, "low")
    crit = make_agent(api, "crit")
    first = run_now(api, low, priority="LOW")
    msg = take(system)
    res = system.runs.claim(msg[0].body["a"], msg[0].body["s"], 1, "dead-worker", clock.now().timestamp(),
                            clock.now().timestamp() + 10)
    assert res.ok  # a worker claims it, then dies
    critical = run_now(api, crit, priority="CRITICAL")
    assert take(system) == [] and used(system) == 1, "cap 1 is held by the claimed run"
    clock.advance(11)
    assert work(system, msg) == ["abandoned"]  # the redelivery ends the dead attempt ...
    assert used(system) <= 1
    sent = take(system)
    assert [m.body["s"] for m in sent] == [critical], "... and the slot goes to the waiting CRITICAL run"
    assert work(system, sent) == ["succeeded"]  # ... whose end hands the slot to the LOW retry
    retry = take(system)
    assert [m.body["s"] for m in retry] == [first] and retry[0].body["n"] == 2
    clock.advance(retry[0].delay_seconds + 1)
    assert work(system, retry) == ["succeeded"]
    assert status_of(api, low, first) == "SUCCEEDED" and used(system) == 0


# 5. The cap is small counters, whatever its size ---------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1000}])
def test_slot_counters_stay_small_at_cap_1000(api, system):
    aid = make_agent(api)
    for _ in range(30):
        run_now(api, aid)
    assert len(take(system)) == 30
    items = list(ControlModel.scan())
    counters = [m for m in items if m.pk.startswith("SLOTS#")]
    assert len(counters) == 10 and sum(int(m.used or 0) for m in counters) == 30
    for m in counters:  # nothing grows with the number of runs held
        assert set(k for k, v in m.attribute_values.items() if v is not None) <= {"pk", "used", "waiting", "audit"}


# 6. A failed admission holds no slot ------------------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1}])
def test_a_failed_admission_leaves_no_phantom_slot(api, system, clock, faults):
    aid = make_agent(api)
    faults.add("TransactWriteItems", "throttle", times=1)
    sid = run_now(api, aid, priority="CRITICAL")
    assert take(system) == [] and used(system) == 0, "nothing was admitted, nothing is held"
    system.dispatcher.tick()
    assert work(system, take(system)) == ["succeeded"]
    assert status_of(api, aid, sid) == "SUCCEEDED"


# 7. A cancel during a failing attempt is never lost ---------------------------------------------------
def test_a_cancel_during_an_attempt_that_fails_retryably_ends_the_run_cancelled(api, system, clock):
    aid = make_agent(api, kind="fail", config={"times": 5, "category": "TRANSIENT"}, maxRetries=3)
    sid = run_now(api, aid)
    msgs = take(system)
    original = system.runs.finish

    def cancel_then_finish(s, t, *a, **kw):  # the cancel lands while the attempt is running
        if not getattr(cancel_then_finish, "done", False):
            cancel_then_finish.done = True
            assert api.post(f"/api/agents/{aid}/sessions/{sid}/cancel").status_code == 202
        return original(s, t, *a, **kw)

    system.runs.finish = cancel_then_finish
    work(system, msgs)
    assert status_of(api, aid, sid) == "CANCELLED"
    assert take(system) == [] and used(system) == 0


# 8. A RUNNING run whose worker died is swept, with no message left ------------------------------------
def test_a_running_run_whose_worker_died_is_recovered_by_the_tick(api, system, clock):
    aid = make_agent(api, timeoutSeconds=30)
    sid = run_now(api, aid)
    m = take(system)[0]  # the message is gone (deleted by a duplicate, or past maxReceiveCount)
    now = clock.now().timestamp()
    assert system.runs.claim(m.body["a"], m.body["s"], 1, "dead", now, now + 90).ok
    clock.advance(91)
    report = system.dispatcher.tick()
    assert report.recovered == 1
    s = api.get(f"/api/agents/{aid}/sessions/{sid}").json
    assert s["status"] == "RETRYING" and s["error"]["category"] == "INTERNAL"
    clock.advance(400)  # past the retry's time and its claim lease: a duplicate message is harmless
    system.dispatcher.tick()
    assert sorted(work(system, take(system))) in (["succeeded"], ["duplicate", "succeeded"])
    assert status_of(api, aid, sid) == "SUCCEEDED" and used(system) == 0


# 9. QUEUE_ONE waits for the running run, it does not poll ----------------------------------------------
def test_queue_one_waits_until_the_running_run_is_due_to_end(api, system, clock):
    aid = make_agent(api, kind="sleep", config={"seconds": 1}, timeoutSeconds=120)
    schedule(api, aid, "* * * * *", overlapPolicy="QUEUE_ONE")
    clock.advance(60)
    system.dispatcher.tick()
    first = take(system)
    clock.advance(first[0].delay_seconds + 1)
    now = clock.now().timestamp()
    assert system.runs.claim(first[0].body["a"], first[0].body["s"], 1, "busy", now, now + 180).ok
    clock.advance(60)
    system.dispatcher.tick()
    second = take(system)
    clock.advance(second[0].delay_seconds + 1)
    assert set(work(system, second)) == {"waiting"}
    waiting = [s for s in sessions(api, aid) if s["sessionId"] == second[0].body["s"]][0]
    assert waiting["status"] == "QUEUED"
    item = SessionModel.get(aid, second[0].body["s"])
    assert item.next_attempt_at >= now + 180 - 1, "it waits for the running run's lease, not a 5 s poll"
    assert used(system) == 1


# 11. The common path costs at most four of our own requests per run ------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 50}])
def test_own_aws_requests_per_scheduled_run_are_at_most_four(api, system, clock):
    ids = [make_agent(api, f"a{i}") for i in range(20)]
    for aid in ids:
        schedule(api, aid, "* * * * *")
    clock.advance(60)
    system.dispatcher.tick()
    work(system, take(system))  # warm: agents cached, first fires done
    class NoEvents:  # the event stream's writes and fan-out are measured apart (bench)
        def __getattr__(self, name):
            return lambda *a, **kw: 0

    system.__dict__["events"] = NoEvents()
    f = Faults()
    runs = 0
    with f.installed():
        for _ in range(3):
            clock.advance(60)
            system.dispatcher.tick()
            for _ in range(10):
                sent = take(system)
                if not sent:
                    break
                runs += len(sent)
                work(system, sent)
    assert runs >= 60
    per_run = sum(f.calls.values()) / runs
    assert per_run <= 4.0, (per_run, f.calls)
