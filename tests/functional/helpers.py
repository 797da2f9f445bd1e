"""Drive the tick and the worker by hand, as the event sources would.

moto delays messages by wall time; tests have a fixed clock, so they take
messages straight from moto's queue (with the DelaySeconds they were sent
with) instead of waiting.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends


@dataclass
class Sent:
    body: dict
    delay_seconds: int
    message_id: str


def _queue(url: str):
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(name)


def take(container, url: str | None = None) -> list[Sent]:
    """Remove and return every message on the queue (delayed or not), oldest first."""
    q = _queue(url or container.settings.work_queue_url)
    out = []
    for m in list(q._messages):
        delay = 0
        if m.delayed_until and m.sent_timestamp:
            delay = round((m.delayed_until - int(m.sent_timestamp)) / 1000)
        out.append(Sent(json.loads(m.body), delay, m.id))
    q._messages = []
    return out


def peek(container, url: str | None = None) -> list[dict]:
    q = _queue(url or container.settings.work_queue_url)
    return [json.loads(m.body) for m in q._messages]


def work(container, sent: list[Sent]) -> list[str]:
    return [container.worker.handle(s.body) for s in sent]


def drain(container, rounds: int = 20) -> list[str]:
    """Run the worker on everything queued, including what each run admits next."""
    results: list[str] = []
    for _ in range(rounds):
        sent = take(container)
        if not sent:
            return results
        results += work(container, sent)
    return results
