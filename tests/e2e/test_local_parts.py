"""In-process checks of pieces of ``local`` that the end-to-end run cannot pin down deterministically."""
from __future__ import annotations

import json
import re
import threading

from chalice import Chalice

from local.loops import SqsPoller, TickLoop
from local.rest import make_thread_safe
from local.ws_gateway import new_connection_id


def test_current_request_is_per_thread_once_made_thread_safe():
    app = Chalice(app_name="t", configure_logs=False)
    app.current_request = "before"
    make_thread_safe(app)
    make_thread_safe(app)  # idempotent
    assert app.current_request is None  # a fresh per-thread slot
    app.current_request = "main"
    seen = {}

    def other():
        seen["initial"] = app.current_request
        app.current_request = "other"
        seen["own"] = app.current_request

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == {"initial": None, "own": "other"}
    assert app.current_request == "main"
    assert isinstance(app, Chalice) and app.app_name == "t"


def test_connection_ids_look_like_api_gateway_ones_and_are_url_safe():
    ids = {new_connection_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{15}=", i) for i in ids)


class _FakeSqs:
    def get_queue_attributes(self, **kw):
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:work"}}


def test_sqs_records_have_the_lambda_event_shape_powertools_reads():
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    poller = SqsPoller(lambda *a: None, _FakeSqs(), "http://q/work", concurrency=2, region="us-east-1")
    message = {
        "MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": json.dumps({"t": "a"}), "MD5OfBody": "x",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
        "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}},
    }
    record = next(iter(SQSEvent({"Records": [poller.record(message)]}).records))
    assert record.message_id == "m-1" and record.receipt_handle == "rh-1" and record.json_body == {"t": "a"}
    assert record.attributes.approximate_receive_count == "2"
    assert record.event_source_arn == "arn:aws:sqs:us-east-1:123456789012:work"
    assert record.message_attributes["k"].string_value == "v"


def test_tick_events_have_the_scheduled_event_shape_chalice_reads():
    from chalice.app import CloudWatchEvent

    loop = TickLoop(lambda *a: None, 60, region="eu-west-1")
    event = CloudWatchEvent(loop.event(), None)
    assert event.detail_type == "Scheduled Event" and event.source == "aws.events" and event.region == "eu-west-1"


def test_ticks_with_a_whole_period_start_just_after_a_second():
    loop = TickLoop(lambda *a: None, 2, region="us-east-1")
    assert loop.next_start(100.5, 101.0) == 103.02  # the first tick (at once) then onto the grid
    assert loop.next_start(103.02, 103.3) == 105.02  # then exactly every period
    assert loop.next_start(105.02, 108.0) == 108.0  # a tick longer than the period: the next at once
    t = 1795680000.02
    for _ in range(1000):  # no drift from floating point
        t = loop.next_start(t, t + 0.5)
    assert abs(t - 1795682000.02) < 1e-3
    assert TickLoop(lambda *a: None, 2.5, region="us-east-1").next_start(100.3, 100.4) == 102.8
