"""SQS and SNS adapters. Clients are passed in."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from chalicelib.adapters.errors import aws_call
from chalicelib.errors import StorageError

log = logging.getLogger(__name__)
BATCH = 10


@dataclass(frozen=True)
class OutMessage:
    id: str  # unique within the batch (the session id)
    body: dict
    delay_seconds: int = 0
    deliver_at: float | None = None  # epoch seconds: DelaySeconds is computed when each batch goes

    def delay(self, now: float | None) -> int:
        if self.deliver_at is None or now is None:
            return max(0, min(900, int(self.delay_seconds)))
        return max(0, min(900, math.floor(self.deliver_at - now)))


class WorkQueue:
    """The work queue (and, with another URL, the dead-letter queue)."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def send_batch(self, messages: Sequence[OutMessage], attempts: int = 3, now=None) -> list[str]:
        """SendMessageBatch, 10 a call; failed entries are retried. Returns ids never sent.

        ``now`` (a callable) makes each batch's DelaySeconds count from when it is sent, so
        the last batches of a long tick are not late by the time the tick took.
        """
        failed: list[str] = []
        for i in range(0, len(messages), BATCH):
            todo = list(messages[i : i + BATCH])
            for _ in range(attempts):
                t = now() if now is not None else None
                entries = [
                    {
                        "Id": _entry_id(n),
                        "MessageBody": json.dumps(m.body, separators=(",", ":")),
                        "DelaySeconds": m.delay(t),
                    }
                    for n, m in enumerate(todo)
                ]
                with aws_call("send to queue"):
                    resp = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
                bad = {e["Id"] for e in resp.get("Failed", [])}
                todo = [m for n, m in enumerate(todo) if _entry_id(n) in bad]
                if not todo:
                    break
            failed += [m.id for m in todo]
        if failed:
            log.warning("queue send failed", extra={"session_ids": failed})
        return failed

    def send(self, body: dict, delay_seconds: int = 0) -> None:
        with aws_call("send to queue"):
            self.client.send_message(
                QueueUrl=self.url,
                MessageBody=json.dumps(body, separators=(",", ":")),
                DelaySeconds=max(0, min(900, int(delay_seconds))),
            )

    def receive(self, max_messages: int = 10, wait_seconds: int = 0, visibility: int | None = None) -> list[dict]:
        kwargs = dict(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        if visibility is not None:
            kwargs["VisibilityTimeout"] = visibility
        with aws_call("receive from queue"):
            return self.client.receive_message(**kwargs).get("Messages", [])

    def delete_batch(self, receipt_handles: Iterable[str]) -> None:
        handles = list(receipt_handles)
        for i in range(0, len(handles), BATCH):
            entries = [{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles[i : i + BATCH])]
            with aws_call("delete from queue"):
                self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        with aws_call("change visibility"):
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )

    def depth(self) -> int:
        with aws_call("queue depth"):
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
        )


def _entry_id(n: int) -> str:
    return f"m{n}"


class AlertTopic:
    def __init__(self, client: Any, arn: str) -> None:
        self.client = client
        self.arn = arn

    def publish(self, subject: str, message: dict) -> None:
        if not self.arn:
            raise StorageError("alert topic is not configured", retryable=False)
        with aws_call("publish alert"):
            self.client.publish(
                TopicArn=self.arn, Subject=subject[:100], Message=json.dumps(message, separators=(",", ":"))
            )
