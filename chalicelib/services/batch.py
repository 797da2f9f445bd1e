"""SQS batch for the worker, with Powertools partial batch responses.

A record whose handling raises is reported in ``batchItemFailures`` (and only
that one is redelivered); the queue's redrive policy moves a poison message to
the DLQ after its receive count.
"""
from __future__ import annotations

import json
import logging

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

from chalicelib.errors import SchedulerError

log = logging.getLogger("agent_scheduler.worker")


def _remaining_ms(context) -> int | None:
    get = getattr(context, "get_remaining_time_in_millis", None)
    return get() if callable(get) else None


def process_sqs_event(container, event: dict, context=None) -> PartialItemFailureResponse:
    processor = BatchProcessor(event_type=EventType.SQS)

    def handle(record) -> str:
        try:
            body = json.loads(record.body)
        except ValueError:
            log.error("dropping a message that is not JSON", extra={"message_id": record.message_id})
            return "malformed"
        if not isinstance(body, dict):
            log.error("dropping a message that is not an object", extra={"message_id": record.message_id})
            return "malformed"
        try:
            return container.worker.handle(body, remaining_ms=_remaining_ms(context))
        except SchedulerError as exc:
            if exc.retryable:
                raise  # partial failure: redelivered
            if exc.status_code == 400:
                log.error("dropping a malformed run message", extra={"message_id": record.message_id})
                return "malformed"
            raise

    from chalicelib.services import metrics

    try:
        return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
    finally:
        metrics.flush()
