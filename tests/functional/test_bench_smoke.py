"""bench/ stays importable and runnable: `python -m bench --quick` on tiny sizes.

No figure is asserted (and never a wall-clock time): only that every part runs,
that the recorded tick replays request for request, and that the report and the
plot are written. The real run is `make bench`.
"""
from __future__ import annotations

from bench.run import main


def test_bench_runs_on_tiny_sizes(tmp_path, capsys):
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    results = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for needle in ("| # | figure |", "nproc", "tick path", "worker path", "start lateness", "tracemalloc",
                   "next-fire computations per second"):
        assert needle in results
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
