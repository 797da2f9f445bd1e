"""The tick loop and the SQS poller: what EventBridge and the event source mapping do in AWS.

Both call the Chalice app's own Lambda handlers (``tick`` and ``worker``) with
the events AWS would send, so the local system runs the deployed entry points.

The poller short-polls every ``POLL_SECONDS`` rather than long-polling: moto's
long poll wakes up on new messages but not when a delayed message becomes
visible, which would make delayed runs up to a second late. It receives only
as many messages as it has free workers, and hands each message to its own
invocation (a batch of one, as the deployed event source: infra/config.py
``WORKER_BATCH_SIZE``): records of one batch are handled one after the other,
so two runs due on the same second must not share a batch. A record the
handler reports in ``batchItemFailures`` is left on the queue: it reappears
after the visibility timeout, and the queue's redrive policy moves it to the
DLQ after ``maxReceiveCount`` receives (moto honours it).
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

log = logging.getLogger("local.loops")

POLL_SECONDS = 0.2
RECORDS_PER_INVOCATION = 1
MAX_MESSAGES = 10  # SQS ReceiveMessage limit

Invoke = Callable[[str, dict], Any]  # (handler name, event) -> result


class TickLoop:
    """Calls the ``tick`` handler at once, then every ``period`` seconds (no drift, no pile-up).

    With a whole number of seconds as period, ticks after the first start just after
    a wall-clock second (``PHASE``). The tick sends each run with
    ``DelaySeconds = floor(fire time - tick time)``, so the message becomes visible
    ``1 - PHASE`` seconds (less the tick's own work) before its fire time: the most
    slack the poller and the worker can get to start the run on its second.
    """

    PHASE = 0.02

    def __init__(self, invoke: Invoke, period: float, *, region: str, account: str = "000000000000",
                 rule_arn: str | None = None) -> None:
        self.invoke = invoke
        self.period = period
        self.region = region
        self.account = account
        self.rule_arn = rule_arn or f"arn:aws:events:{region}:{account}:rule/agent-scheduler-local-tick"
        self.stop_event = threading.Event()
        self.ticks = 0
        self.thread = threading.Thread(target=self._run, name="tick-loop", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def event(self) -> dict:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account,
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [self.rule_arn],
            "detail": {},
        }

    def next_start(self, last_planned: float, now: float) -> float:
        """Wall-clock time of the tick after the one planned for ``last_planned``."""
        target = last_planned + self.period
        if float(self.period).is_integer():
            target = math.ceil(target - self.PHASE - 1e-6) + self.PHASE
        return max(target, now)  # a tick longer than the period: the next one at once, no pile-up

    def _run(self) -> None:
        planned = time.time()  # the first tick at once
        while not self.stop_event.is_set():
            try:
                self.invoke("tick", self.event())
                self.ticks += 1
            except Exception:
                log.exception("tick failed; the next tick retries")
            now = time.time()
            planned = self.next_start(planned, now)
            wait = min(planned - now, self.period + 1.0)  # bounded if the wall clock jumps
            if wait < 0 or planned - now > self.period + 1.0:
                planned = now + max(0.0, wait)
            self.stop_event.wait(max(0.0, wait))


class _Slots:
    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self.cond = threading.Condition()

    def wait_free(self, timeout: float) -> int:
        with self.cond:
            if self.busy >= self.size:
                self.cond.wait(timeout)
            return self.size - self.busy

    def take(self) -> None:
        with self.cond:
            self.busy += 1

    def give(self) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self.cond:
            while self.busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


class SqsPoller:
    """The SQS event source mapping: receive, invoke ``worker``, delete what succeeded."""

    def __init__(self, invoke: Invoke, sqs, queue_url: str, *, concurrency: int, region: str,
                 handler: str = "worker") -> None:
        self.invoke = invoke
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.region = region
        self.slots = _Slots(max(1, concurrency))
        self.stop_event = threading.Event()
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.thread = threading.Thread(target=self._run, name="sqs-poller", daemon=True)
        self.invocations = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop receiving; give running invocations ``timeout`` seconds. True if none is left."""
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return self.slots.wait_idle(timeout)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            free = self.slots.wait_free(POLL_SECONDS)
            if free <= 0 or self.stop_event.is_set():
                continue
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(MAX_MESSAGES, free),
                    WaitTimeSeconds=0,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception:
                if self.stop_event.is_set():
                    return
                log.exception("receive from the work queue failed; retrying")
                self.stop_event.wait(1.0)
                continue
            if not messages:
                self.stop_event.wait(POLL_SECONDS)
                continue
            for i in range(0, len(messages), RECORDS_PER_INVOCATION):
                batch = messages[i : i + RECORDS_PER_INVOCATION]
                self.slots.take()
                threading.Thread(
                    target=self._invoke_batch, args=(batch,), name="worker-invocation", daemon=True
                ).start()

    def record(self, m: dict) -> dict:
        attrs = dict(m.get("Attributes") or {})
        body = m["Body"]
        return {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": attrs.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attrs.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attrs.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                "ApproximateFirstReceiveTimestamp": attrs.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                ),
            },
            "messageAttributes": {
                name: {
                    "stringValue": v.get("StringValue"),
                    "binaryValue": v.get("BinaryValue"),
                    "stringListValues": v.get("StringListValues", []),
                    "binaryListValues": v.get("BinaryListValues", []),
                    "dataType": v.get("DataType", "String"),
                }
                for name, v in (m.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": m.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }

    def _invoke_batch(self, messages: list[dict]) -> None:
        try:
            records = [self.record(m) for m in messages]
            try:
                result = self.invoke(self.handler, {"Records": records})
                failed = {f.get("itemIdentifier") for f in (result or {}).get("batchItemFailures", [])}
            except Exception as exc:  # the whole invocation failed: every record comes back later
                log.warning("worker invocation failed: %s: %s", type(exc).__name__, exc)
                failed = {r["messageId"] for r in records}
            self.invocations += 1
            done = [r for r in records if r["messageId"] not in failed]
            if failed:
                log.warning("%d message(s) left for redelivery after the visibility timeout", len(failed))
            if done:
                try:
                    self.sqs.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[{"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(done)],
                    )
                except Exception:
                    log.exception("delete from the work queue failed; the messages come back as duplicates")
        finally:
            self.slots.give()
