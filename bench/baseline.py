"""The plain baseline scheduler every figure is compared with.

What a first, straightforward implementation would do, on the same items:

- tick (once a minute): ``Scan`` the whole agents table with a filter
  ``next_run_at <= now``; for each due item, compute the fire after the one
  it holds with croniter, one conditional ``UpdateItem`` (``next_run_at`` still the value
  read: two ticks cannot both fire it) and one ``SendMessage`` (no delay), in
  scan order. A run therefore starts at the first tick at or after its time
  ("at the next minute"); no priorities, no work-conserving admission.
- worker, per run: one conditional ``PutItem`` of a run record (claim: drops
  duplicate deliveries) and one ``UpdateItem`` when it ends.
"""
from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

AGENTS_TABLE = "bench-baseline-agents"
RUNS_TABLE = "bench-baseline-runs"
QUEUE_NAME = "bench-baseline-work"


def create(ddb, sqs) -> str:
    """Create the baseline's tables and queue (moto); returns the queue URL."""
    ddb.create_table(
        TableName=AGENTS_TABLE,
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"}, {"AttributeName": "agent_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "tenant_id", "AttributeType": "S"},
            {"AttributeName": "agent_id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName=RUNS_TABLE,
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]


def load(ddb, items: list[dict]) -> None:
    """Bulk-load the same items the project's table holds (BatchWriteItem, 25 a call)."""
    for i in range(0, len(items), 25):
        req: dict | None = {AGENTS_TABLE: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
        while req:
            req = ddb.batch_write_item(RequestItems=req).get("UnprocessedItems") or None


class BaselineScheduler:
    def __init__(self, ddb, sqs, queue_url: str) -> None:
        self.ddb = ddb
        self.sqs = sqs
        self.queue_url = queue_url

    @staticmethod
    def next_fire(item: dict, after: float) -> float:
        spec = json.loads(item["schedule"]["S"])
        zone = ZoneInfo(spec.get("timezone") or "UTC")
        it = croniter(spec["cronExpression"], datetime.fromtimestamp(after, zone), hash_id=item["agent_id"]["S"])
        return it.get_next(float)

    def tick(self, now: float) -> dict:
        due = sent = lost = 0
        paginator = self.ddb.get_paginator("scan")
        pages = paginator.paginate(
            TableName=AGENTS_TABLE,
            FilterExpression="next_run_at <= :now",
            ExpressionAttributeValues={":now": {"N": repr(now)}},
        )
        for page in pages:
            for item in page.get("Items", []):
                due += 1
                old = item["next_run_at"]["N"]
                nxt = self.next_fire(item, float(old))
                try:
                    self.ddb.update_item(
                        TableName=AGENTS_TABLE,
                        Key={"tenant_id": item["tenant_id"], "agent_id": item["agent_id"]},
                        UpdateExpression="SET next_run_at = :n",
                        ConditionExpression="next_run_at = :o",
                        ExpressionAttributeValues={":n": {"N": repr(nxt)}, ":o": {"N": old}},
                    )
                except self.ddb.exceptions.ConditionalCheckFailedException:
                    lost += 1
                    continue
                body = {"t": item["tenant_id"]["S"], "a": item["agent_id"]["S"], "f": float(old)}
                self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body, separators=(",", ":")))
                sent += 1
        return {"due": due, "sent": sent, "lost": lost}

    def work(self, body: dict, now: float) -> str:
        run_id = f"{body['a']}#{body['f']!r}"
        try:
            self.ddb.put_item(
                TableName=RUNS_TABLE,
                Item={"run_id": {"S": run_id}, "tenant_id": {"S": body["t"]}, "status": {"S": "RUNNING"},
                      "started_at": {"N": repr(now)}},
                ConditionExpression="attribute_not_exists(run_id)",
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return "duplicate"
        # ... the agent runs here ...
        self.ddb.update_item(
            TableName=RUNS_TABLE,
            Key={"run_id": {"S": run_id}},
            UpdateExpression="SET #s = :s, finished_at = :f",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "SUCCEEDED"}, ":f": {"N": repr(now)}},
        )
        return "succeeded"
