"""bench/ stays importable and runnable: `python -m bench --quick` on tiny sizes.

No figure is asserted (and never a wall-clock time): only that every part runs,
that the recorded tick replays request for request, that the report and the
plot are written, that the contention figure never saw more runs executing
than the cap (the bench raises otherwise), and that the write-unit meter bills
items as DynamoDB does. The real run is `make bench`.
"""
from __future__ import annotations

from bench.run import main


def test_bench_runs_on_tiny_sizes(tmp_path, capsys):
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    results = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for needle in ("| # | figure |", "nproc", "tick path", "worker path", "start lateness", "tracemalloc",
                   "next-fire computations per second", "own AWS requests per run, whole path",
                   "write units per run, idle, cap 5 / 100 / 1,000", "dollars per million runs",
                   "run starts per second at cap 1,000", "optimistic retries per run",
                   "most runs executing at once under contention (cap never exceeded)"):
        assert needle in results
    assert "lease map" not in results and "CAPACITY" not in results
    svg = (tmp_path / "lateness.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "AWS requests per fire, tick path" in capsys.readouterr().out


def test_request_counter_counts_each_call_once():
    import boto3
    from moto import mock_aws

    from bench.counting import RequestCounter

    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        counter = RequestCounter().attach([sqs])
        with counter.phase("x"):
            url = sqs.create_queue(QueueName="q")["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody="{}")
        counter.detach()
        sqs.send_message(QueueUrl=url, MessageBody="{}")  # not counted
    assert counter.by_op(["x"]) == {"CreateQueue": 1, "SendMessage": 1}
    assert counter.total() == 2


def test_meter_bills_write_units_by_item_size_transactions_and_indexes():
    import boto3
    from moto import mock_aws

    from bench.units import PathMeter

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "g", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{"IndexName": "gix", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        )
        meter = PathMeter().attach([ddb])
        big = "x" * 1500  # with its name and key: a 1-2 KB item
        with meter.phase("put"):
            ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"S": big}})
        with meter.phase("tx"):
            ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}}])
        with meter.phase("index"):  # adds an index entry: 1 unit on the table, 1 on the index
            ddb.update_item(TableName="t", Key={"pk": {"S": "b"}}, UpdateExpression="SET g = :g",
                            ExpressionAttributeValues={":g": {"S": "k"}})
        with meter.phase("failed"):  # a failed condition still costs the item's units
            try:
                ddb.put_item(TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
            except ddb.exceptions.ConditionalCheckFailedException:
                pass
        with meter.phase("read"):
            ddb.get_item(TableName="t", Key={"pk": {"S": "a"}}, ConsistentRead=True)
        meter.detach()
    assert meter.wcu["put"] == 2
    assert meter.wcu["tx"] == 2
    assert meter.wcu["index"] == 2 and meter.wcu_by_key["gix k"] == 1
    assert meter.wcu["failed"] == 2 and meter.failures[("failed", "PutItem")] == 1
    assert meter.rru["read"] == 1
