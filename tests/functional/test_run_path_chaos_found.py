"""Run-path bugs found by ``make chaos`` (devtools/chaos.py), each reproduced on its own."""
from __future__ import annotations

import pytest

from tests.functional.helpers import take, work
from tests.functional.test_dispatch import make_agent
from tests.functional.test_run_path_faults import run_now, status_of, used


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1}])
def test_a_run_ending_while_the_waiting_hint_is_set_hands_its_slot_over(api, system):
    """The run was sent while nothing waited (its message does not say so); a run queued
    behind it sets the hint; the finish that tries to release must hand the slot over."""
    first_agent = make_agent(api, "first")
    second_agent = make_agent(api, "second")
    first = run_now(api, first_agent)
    sent = take(system)
    assert [m.body["s"] for m in sent] == [first] and "w" not in sent[0].body
    second = run_now(api, second_agent)
    assert take(system) == [], "cap 1 is held by the first run"
    assert work(system, sent) == ["succeeded"]
    handed = take(system)
    assert [m.body["s"] for m in handed] == [second]
    assert work(system, handed) == ["succeeded"]
    assert status_of(api, first_agent, first) == status_of(api, second_agent, second) == "SUCCEEDED"
    assert used(system) == 0


def test_a_lost_answer_to_a_plain_write_is_a_retryable_storage_error(api, system):
    """A read timeout under pynamodb (its error's cause has no response) was turned into an
    AttributeError by the error translation: a claim whose answer was lost crashed the worker
    and a tick writing its last-tick time crashed the tick."""
    from chalicelib.errors import StorageError
    from devtools.faults import Faults

    aid = make_agent(api)
    sid = run_now(api, aid)
    msgs = take(system)
    f = Faults()
    f.add("UpdateItem", "lost_answer", times=1)  # the claim commits, its answer is lost
    with f.installed(), pytest.raises(StorageError) as err:
        work(system, msgs)
    assert err.value.retryable
    with f.installed():
        f.add("UpdateItem", "lost_answer", times=1)
        with pytest.raises(StorageError):
            system.control.set_last_tick(system.clock.now().timestamp())
    assert status_of(api, aid, sid) == "RUNNING"  # the redelivery finds it claimed by a stopped worker
